"""The img2vid flow: still images -> Ken Burns clips (the seed's ``POST /video/img2vid``).

Its parameters are the seed's request body, so a seed body is a valid ``parameters`` object::

    {"images": [{"id": "img-1", "image_url": "https://.../a.jpg", "duracao": 6.5}],
     "path": "Project Name/Video Title/videos/temp/"}

Optional: ``settings`` (RenderSettings: fps, size, zoom, encoder...), ``storage`` ("local" or an
S3Bucket block name), ``backend`` ("local"). Steps: validate -> plan (keys, destinations) -> fan out
one render task per image (bounded by CPU count) -> verify each output in storage -> publish the
result, a table and a progress artifact. One bad image does not lose the others: it is listed in
``failed`` with its typed error and the flow run ends Failed with a message saying how many failed.

Run it with no configuration (local backend, ``./renders``)::

    python -m flows.img2vid examples/img2vid_request.json
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.backends import resolve_backend
from tasks.errors import RequestError
from tasks.planning import check_inputs_allowed, plan_img2vid
from tasks.render_local import LOCAL_MAX_WORKERS
from tasks.reporting import ProgressReporter, publish_result, publish_table
from tasks.responses import (
    Execution,
    FailedItem,
    Img2VidResponse,
    Stats,
    VideoEntry,
    as_json,
    error_info,
    now_utc,
    outcome_code,
)
from tasks.runpod_jobs import cancel_runpod_jobs
from tasks.storage import resolve_storage
from worker_image.contract import MAX_IMAGES, ClipResult, RenderSettings

from .cli import run_request_file
from .schema import SeedImageInput

@flow(name="img2vid", task_runner=ThreadPoolTaskRunner(max_workers=LOCAL_MAX_WORKERS), validate_parameters=True,
      on_cancellation=[cancel_runpod_jobs])
def img2vid(
    images: list[SeedImageInput],
    path: str,
    settings: RenderSettings | None = None,
    storage: str = "local",
    backend: str = "local",
) -> Any:
    """Render one Ken Burns clip per image and store them as ``<path>/video_N.mp4``.

    Args:
        images: ``[{id, image_url, duration_s (alias duracao)}]``, 1..500 items, in output order.
        path: Output prefix (the seed's ``path``), e.g. ``"Project/Video/videos/temp/"``.
        settings: Render settings; the seed's defaults (24 fps, 1920x1080, zoom 1.0 -> 1.324) when omitted.
        storage: ``"local"`` (``$API_GPU_RENDERS_DIR`` or ``./renders``) or an S3Bucket block name.
        backend: ``"local"`` (the worker_image engine in-process, one clip per CPU at a time) or a
            RunPodEndpoint block name (see ``tasks.backends``).

    Returns:
        The response dict (see ``tasks.responses.Img2VidResponse``). When any item failed, a Failed
        state carrying that same dict, with a message saying how many failed.

    Raises:
        RequestError: invalid path, duplicate ids, local paths with a remote backend, unknown backend.
        pydantic.ValidationError: (before the run starts) parameters out of bounds, naming the image id
            and field.
    """
    started = now_utc()
    logger = get_run_logger()
    settings = settings or RenderSettings()
    if not 1 <= len(images) <= MAX_IMAGES:
        raise RequestError("images", f"must hold 1..{MAX_IMAGES} images, got {len(images)}")
    renderer = resolve_backend(backend)
    store = resolve_storage(storage)
    check_inputs_allowed(images, local_inputs_ok=store.accepts_local_inputs() and renderer.local_inputs_ok)
    plan = plan_img2vid(images, path, store, upload_expiry_s=renderer.upload_expiry_s)
    logger.info("img2vid: %d images -> %s (storage %s, backend %s)", len(plan), plan[0].key.rsplit("/", 1)[0] or ".",
                store.name, backend)

    progress = ProgressReporter(len(plan), key="img2vid-progress", what="clips")
    videos: dict[int, VideoEntry] = {}
    failed: dict[int, FailedItem] = {}

    def on_done(i: int, outcome: ClipResult | BaseException) -> None:
        item = plan[i]
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            store.verify(item.key, size_bytes=outcome.size_bytes, sha256=outcome.sha256)
            url, url_kind = store.url_for(item.key)
            videos[i] = VideoEntry(id=item.job.id, video_url=url, filename=item.job.filename, key=item.key,
                                   url_kind=url_kind, duration_s=outcome.duration_s, frames=outcome.frames,
                                   width=outcome.width_px, height=outcome.height_px, size_bytes=outcome.size_bytes,
                                   encoder=outcome.encoder)
        except Exception as exc:  # one item's failure, typed; the others go on
            logger.warning("item %s failed: %s", item.job.id, exc)
            failed[i] = FailedItem(id=item.job.id, filename=item.job.filename, error=error_info(exc))
        progress.advance()

    renderer([p.job for p in plan], settings, on_done)

    ordered_failed = [failed[i] for i in sorted(failed)]
    code, message = outcome_code(len(plan), ordered_failed)
    response = Img2VidResponse(
        code=code,
        message=message,
        videos=[videos[i] for i in sorted(videos)],
        failed=ordered_failed,
        execution=Execution.between(started, now_utc()),
        stats=Stats(jobId=str(flow_run.id or ""), total=len(plan), processed=len(videos), failed=len(failed)),
    )
    result = as_json(response)
    publish_table(
        [{"id": v.id, "filename": v.filename, "duration_s": v.duration_s, "size_bytes": v.size_bytes,
          "url": v.video_url} for v in response.videos]
        + [{"id": f.id, "filename": f.filename, "duration_s": None, "size_bytes": None,
            "url": f"FAILED: {f.error.type}: {f.error.message}"} for f in ordered_failed],
        key="img2vid-clips",
        description=f"img2vid: {message}",
    )
    publish_result(result, key="img2vid-result")
    logger.info("img2vid: %s", message)
    return _final_state(result, message, failed_count=len(failed))


def _final_state(result: dict[str, Any], message: str, *, failed_count: int) -> State:
    """Completed when nothing failed, else Failed; both carry the response dict."""
    if failed_count:
        return Failed(message=message, data=result)
    return Completed(message=message, data=result)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.img2vid REQUEST.json``: run the flow on a seed-shaped request body, print the
    result JSON and the folder the videos are in. Exit status 0 when every item rendered, 1 otherwise."""
    return run_request_file(img2vid, "img2vid", argv)


if __name__ == "__main__":
    raise SystemExit(main())
