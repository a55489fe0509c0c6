"""The batch flow: render a manifest of img2vid / caption / addaudio requests, skipping what is done.

The manifest (a JSON list or JSON Lines, see ``tasks.batch``) tags each seed request body with its
``operation`` and a ``request_id``::

    {"operation": "caption", "request_id": "ep12-captions", "body": {"url_video": "...", "url_srt": "...",
     "path": "Project/Ep 12/videos/", "output_filename": "ep12.mp4"}}

Steps: read the manifest (http(s) URL, file, or a key in ``storage``) -> validate every body against
its flow's parameters (an invalid one is reported, the others go on) -> skip requests whose done
marker exists for the same body -> run the rest as subflows, ``max_concurrency`` at a time -> write
a done marker per completed request as it finishes, and ``batch-summary.json`` at the end, both under
``path`` in the storage -> publish the summary as the ``batch-result`` artifact. A rerun after a crash
renders only what is missing. Bodies without ``storage`` / ``backend`` get the batch's.

Run it locally::

    python -m flows.batch examples/batch_manifest.jsonl
"""

from __future__ import annotations

import contextvars
import json
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Annotated, Any

from prefect import Flow, flow, get_run_logger
from prefect.exceptions import ParameterTypeError, SignatureMismatchError
from prefect.states import Completed, Failed
from pydantic import Field

from tasks.batch import (
    SUMMARY_NAME,
    BatchItem,
    BatchRequest,
    BatchSummary,
    describe_source,
    load_done,
    mark_done,
    output_keys,
    parse_manifest,
    planned_output_keys,
    read_manifest,
    state_prefix,
    write_object,
)
from tasks.errors import RequestError, StorageError
from tasks.reporting import ProgressReporter, publish_result, publish_table
from tasks.responses import Execution, error_info, failure_code, now_utc
from tasks.storage import resolve_storage

from .addaudio import addaudio
from .caption import caption
from .img2vid import img2vid

#: The flow that renders each operation.
FLOWS: dict[str, Flow] = {"img2vid": img2vid, "caption": caption, "addaudio": addaudio}
#: Upper bound of ``max_concurrency``: each subflow runs its own renders, so more rarely helps.
MAX_CONCURRENCY = 16


@flow(name="batch", validate_parameters=True)
def batch(
    manifest: str,
    path: str | None = None,
    max_concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = 2,
    storage: str = "local",
    backend: str = "local",
    force: bool = False,
) -> Any:
    """Render every request of ``manifest`` that is not done yet, ``max_concurrency`` subflows at a time.

    Args:
        manifest: http(s) URL, ``file://`` URL or path of the manifest, or a key in ``storage``
            (see ``tasks.batch.read_manifest``). JSON list or JSON Lines of ``BatchRequest``.
        path: Storage prefix for ``batch-summary.json`` and ``done/<request_id>.json``; default
            ``batches/<manifest file name>/``.
        max_concurrency: Requests rendered at once (1..16). Each subflow also bounds its own renders.
        storage: ``"local"`` or an S3 storage block name: holds the batch state, read for a manifest key,
            and the default ``storage`` of bodies that name none.
        backend: Default ``backend`` of bodies that name none (``"local"`` or a RunPodEndpoint block name).
        force: Render every request again, ignoring done markers.

    Returns:
        The summary dict (see ``tasks.batch.BatchSummary``); a Failed state carrying it when any request
        failed or was invalid.

    Raises:
        RequestError: the manifest cannot be read or parsed, or ``path`` is not a valid prefix (nothing renders).
        StorageError: the storage block cannot be loaded, or the summary cannot be written.
    """
    started = now_utc()
    logger = get_run_logger()
    store = resolve_storage(storage)
    prefix = state_prefix(path, manifest)
    source = describe_source(manifest)
    requests = parse_manifest(read_manifest(manifest, store), source=source)

    items: dict[int, BatchItem] = {}
    todo: list[tuple[int, BatchRequest, dict[str, Any]]] = []
    writers: dict[str, str] = {}  # output key -> the request_id that writes it
    for i, request in enumerate(requests):
        params = {"storage": storage, "backend": backend, **request.body}
        digest = request.body_sha256()
        try:
            FLOWS[request.operation].validate_parameters(params)
        except (ParameterTypeError, SignatureMismatchError) as exc:
            items[i] = BatchItem(request_id=request.request_id, operation=request.operation, status="invalid",
                                 code=422, message=str(exc).strip(), body_sha256=digest)
            continue
        keys = planned_output_keys(request.operation, request.body)
        clash = next((key for key in keys if key in writers), None)
        if clash is not None:  # two requests, one object: the later would overwrite the earlier's video
            items[i] = BatchItem(request_id=request.request_id, operation=request.operation, status="invalid",
                                 code=422, body_sha256=digest,
                                 message=f"output key {clash!r} is also written by request {writers[clash]!r}")
            continue
        writers.update(dict.fromkeys(keys, request.request_id))
        marker = None if force else load_done(store, prefix, request)
        if marker is not None:
            items[i] = BatchItem(request_id=request.request_id, operation=request.operation, status="skipped",
                                 code=marker.get("code"), flow_run_id=marker.get("flow_run_id"),
                                 keys=marker.get("keys") or [], body_sha256=digest,
                                 message=f"done by flow run {marker.get('flow_run_id')}; not rendered again")
        else:
            todo.append((i, request, params))
    logger.info("batch %s: %d requests, %d to render, %d already done, %d invalid (state under %s)", source,
                len(requests), len(todo), sum(it.status == "skipped" for it in items.values()),
                sum(it.status == "invalid" for it in items.values()), prefix or ".")

    progress = ProgressReporter(len(todo), key="batch-progress", what="requests")

    def run_one(request: BatchRequest, params: dict[str, Any]) -> BatchItem:
        item = _render(request, params)
        if item.status == "rendered":
            try:
                mark_done(store, prefix, request, item)
            except StorageError as exc:  # the video is delivered; only the skip on rerun is lost
                logger.warning("request %s rendered but its done marker was not written: %s", request.request_id, exc)
        progress.advance()
        return item

    if todo:
        with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="batch") as pool:
            # Each thread runs its subflow in a copy of this flow run's context, so Prefect links it as our child.
            futures = {pool.submit(contextvars.copy_context().run, run_one, request, params): i
                       for i, request, params in todo}
            for future in as_completed(futures):
                items[futures[future]] = future.result()

    summary = _summarize([items[i] for i in range(len(requests))], source=source, prefix=prefix,
                         execution=Execution.between(started, now_utc()))
    body = summary.model_dump(mode="json")
    publish_table([{"request_id": it.request_id, "operation": it.operation, "status": it.status, "code": it.code,
                    "flow_run_id": it.flow_run_id, "message": it.message} for it in summary.items],
                  key="batch-requests", description=f"batch: {summary.message}")
    publish_result(body, key="batch-result")
    write_object(store, summary.summary_key, json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8"))
    logger.info("batch: %s; summary at key %s", summary.message, summary.summary_key)
    if summary.code == 200:
        return Completed(message=summary.message, data=body)
    return Failed(message=summary.message, data=body)


def _render(request: BatchRequest, params: dict[str, Any]) -> BatchItem:
    """Run one request as a subflow (named ``<operation>-<request_id>``) and turn its end state into a row."""
    digest = request.body_sha256()
    subflow = FLOWS[request.operation].with_options(flow_run_name=f"{request.operation}-{request.request_id}")
    state = subflow(**params, return_state=True)
    flow_run_id = str(state.state_details.flow_run_id) if state.state_details.flow_run_id else None
    try:
        result = state.result(raise_on_failure=False)
    except BaseException as exc:  # a cancelled or crashed subflow has no result to read
        result = exc
    if isinstance(result, BaseException) or not isinstance(result, dict):
        error = error_info(result) if isinstance(result, BaseException) else None
        message = f"{error.type}: {error.message}" if error else (state.message or state.type.value)
        return BatchItem(request_id=request.request_id, operation=request.operation, status="failed",
                         code=_failure_code(result, error), message=message, flow_run_id=flow_run_id,
                         body_sha256=digest)
    done = state.is_completed() and result.get("code") == 200
    return BatchItem(request_id=request.request_id, operation=request.operation,
                     status="rendered" if done else "failed", code=result.get("code"),
                     message=str(result.get("message") or state.message or ""), flow_run_id=flow_run_id,
                     keys=output_keys(result), body_sha256=digest)


def _failure_code(result: Any, error: Any) -> int:
    """422 for a refused request (RequestError) or bad input, 500 otherwise or when there is no error."""
    if isinstance(result, RequestError):
        return 422
    return failure_code(error) if error else 500


def _summarize(items: list[BatchItem], *, source: str, prefix: str, execution: Execution) -> BatchSummary:
    """Counts, code and message of a batch run (codes as the flows: 200 / 207 / 422 / 500)."""
    counts = {status: sum(it.status == status for it in items) for status in ("rendered", "skipped", "failed", "invalid")}
    bad = [it for it in items if it.status in ("failed", "invalid")]
    if not bad:
        code = 200
    elif len(bad) < len(items):
        code = 207
    else:
        code = 422 if all(it.code == 422 for it in bad) else 500
    message = (f"{len(items)} requests: {counts['rendered']} rendered, {counts['skipped']} skipped, "
               f"{counts['failed']} failed, {counts['invalid']} invalid")
    return BatchSummary(code=code, message=message, manifest=source, prefix=prefix,
                        summary_key=f"{prefix}{SUMMARY_NAME}", items=items,
                        stats={"total": len(items), **counts}, execution=execution)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.batch MANIFEST [PATH]``: run the batch and print the summary JSON.

    Exit status 0 when every request is done, 1 otherwise, 2 on bad usage.
    """
    args = argv if argv is not None else sys.argv[1:]
    if len(args) not in (1, 2):
        print("usage: python -m flows.batch MANIFEST [STATE_PREFIX]", file=sys.stderr)
        return 2
    state = batch(manifest=args[0], path=args[1] if len(args) == 2 else None, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        print(f"batch failed: {result}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    raise SystemExit(main())
