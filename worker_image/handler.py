"""The RunPod Serverless handler: the transport layer around the render engine.

RunPod's SDK takes a job ``{"id", "input"}`` from the endpoint's queue and awaits :func:`handler`. The
``input`` is a job contract (``worker_image.contract``) chosen by its ``operation`` field; it is
validated (``extra="forbid"``) before anything is downloaded. The engine's blocking work runs in a
thread, one clip at a time, so the SDK's event loop keeps answering (heartbeats, stop signals) and a
cancellation or execution timeout lands between clips.

Output shapes (what the orchestrator's ``tasks.render_runpod`` reads from ``/status``):

* success: ``{"results": [...]}`` in job order (one element for caption and addaudio); each element
  is the engine's result dict (``ClipResult``, ``CaptionResult``, ``AddAudioResult``) with ``"ok": True`` or ``{"ok": False, "id", "filename", "error": {type, message, retryable, item_id, field}}``
  (one bad clip never loses the others);
* failure of the whole job: ``{"error": {type, message, retryable, item_id, field}}``, which the SDK
  reports as status FAILED. Bad input has ``retryable: false`` and is not resubmitted.

Run it locally (RunPod's local test mode; no queue, one job, then exit)::

    python worker_image/handler.py                      # runs worker_image/test_input.json
    python worker_image/handler.py --test_input '{"input": {...}}'

In local test mode (no ``RUNPOD_WEBHOOK_GET_JOB``) local file inputs are accepted, since the job comes
from the developer's own machine; on a RunPod worker only http(s) inputs are.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

if __package__ in (None, ""):  # run as a script: import ``worker_image`` as a package, from its parent
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from pydantic import BaseModel, ValidationError

from worker_image import engine
from worker_image.addaudio import render_addaudio
from worker_image.caption import render_caption
from worker_image.contract import AddAudioJob, CaptionJob, Img2VidJob
from worker_image.encoders import select_encoder
from worker_image.errors import InputError, RenderError

log = logging.getLogger("worker_image.handler")

#: Environment variable the RunPod platform sets on real workers (the job-take URL). Its absence
#: means RunPod's local test mode.
JOB_TAKE_ENV = "RUNPOD_WEBHOOK_GET_JOB"

JobDict = dict[str, Any]
Runner = Callable[[JobDict, Any], Awaitable[dict[str, Any]]]


class JobStopped(Exception):
    """Raised inside a clip's thread when RunPod stopped the job (cancel, execution timeout); never reported:
    the platform already settled the job."""


@dataclass(frozen=True)
class Operation:
    """One job kind the handler serves: its contract model and the coroutine that runs it."""

    model: type[BaseModel]
    run: Runner


def is_local_test() -> bool:
    """True in RunPod's local test mode (no job queue configured), where local inputs are allowed."""
    return os.environ.get(JOB_TAKE_ENV) is None


def _report_progress(job: JobDict, progress: dict[str, Any]) -> None:
    """Send a progress update through the SDK (skipped in local test mode: there is no queue)."""
    if is_local_test():
        return
    from runpod.serverless import progress_update

    progress_update(job, progress)


async def run_img2vid(job: JobDict, spec: Img2VidJob) -> dict[str, Any]:
    """Render every clip of an img2vid job, one thread-hop per clip.

    Args:
        job: The RunPod job (``id`` is used for progress updates).
        spec: The validated job input.

    Returns:
        ``{"results": [...]}``, one element per clip in job order (see the module docstring).

    Raises:
        asyncio.CancelledError: the SDK stopped the job (cancel or execution timeout). The clip that
            was rendering finishes in its thread; no further clip starts.
    """
    allow_local = is_local_test()
    results: list[dict[str, Any]] = []
    total = len(spec.clips)
    stop = threading.Event()

    def check_stop(frames_done: int, frames_total: int) -> None:  # called by the engine every 24 frames
        if stop.is_set():
            raise JobStopped(f"job {job.get('id')} stopped at frame {frames_done}/{frames_total}")

    try:
        for index, clip in enumerate(spec.clips, start=1):
            try:
                result = await asyncio.to_thread(engine.render_clip, clip, spec.settings,
                                                 allow_local_inputs=allow_local, on_frames=check_stop)
                results.append({"ok": True, **result.model_dump()})
            except RenderError as err:
                log.warning("clip %s failed: %s", clip.id, err)
                results.append({"ok": False, "id": clip.id, "filename": clip.filename, "error": err.to_payload()})
            _report_progress(job, {"clips_done": index, "clips_total": total})
    except asyncio.CancelledError:
        stop.set()  # the clip's thread aborts its encode at the next 24-frame mark (a stalled download runs out)
        log.info("job %s stopped after %d of %d clips", job.get("id"), len(results), total)
        raise
    return {"results": results}


def single_item(render: Callable[..., BaseModel]) -> Runner:
    """A runner for one-output operations (caption, addaudio): the engine call in a thread, and the same
    ``{"results": [one element]}`` shape as img2vid, so the orchestrator reads every operation alike.

    Args:
        render: The engine entry point, ``render(spec, *, allow_local_inputs) -> result model``.
    """

    async def run(job: JobDict, spec: Any) -> dict[str, Any]:
        try:
            result = await asyncio.to_thread(render, spec, allow_local_inputs=is_local_test())
            item = {"ok": True, **result.model_dump()}
        except RenderError as err:
            log.warning("%s job %s failed: %s", spec.operation, job.get("id"), err)
            item = {"ok": False, "id": getattr(spec, "id", None), "filename": spec.filename, "error": err.to_payload()}
        _report_progress(job, {"items_done": 1, "items_total": 1})
        return {"results": [item]}

    return run


#: Operations served, by the contract's ``operation`` field.
OPERATIONS: dict[str, Operation] = {
    "img2vid": Operation(Img2VidJob, run_img2vid),
    "caption": Operation(CaptionJob, single_item(render_caption)),
    "addaudio": Operation(AddAudioJob, single_item(render_addaudio)),
}


def _validation_message(exc: ValidationError) -> str:
    if len(exc.errors()) == 1:  # the field is named once, by InputError itself
        return exc.errors()[0]["msg"]
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors())


def parse_job_input(job_input: Any) -> tuple[Operation, BaseModel]:
    """Pick the operation and validate the job input against its contract.

    Args:
        job_input: The job's ``input`` (a dict; ``operation`` defaults to ``"img2vid"``).

    Returns:
        The operation and the validated model.

    Raises:
        InputError: not an object, unknown ``operation``, or the contract refused it (unknown or
            misspelled fields included); ``field`` names the first offending field.
    """
    if not isinstance(job_input, dict):
        raise InputError(f"job input must be a JSON object, got {type(job_input).__name__}", field="input")
    name = job_input.get("operation", "img2vid")
    operation = OPERATIONS.get(name) if isinstance(name, str) else None
    if operation is None:
        raise InputError(f"unknown operation {name!r}; this worker serves {sorted(OPERATIONS)}", field="operation")
    try:
        return operation, operation.model.model_validate(job_input)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        raise InputError(_validation_message(exc), field=".".join(str(p) for p in first) or None) from None


async def handler(job: JobDict) -> dict[str, Any]:
    """The RunPod handler: validate the job input, then run its operation.

    Args:
        job: ``{"id": str, "input": {...}}`` as the RunPod SDK passes it.

    Returns:
        The operation's output (``{"results": [...]}``), or ``{"error": {type, message, retryable,
        item_id, field}}`` when the whole job fails (the SDK then reports status FAILED).
    """
    try:
        operation, spec = parse_job_input(job.get("input"))
    except InputError as err:
        log.warning("job %s refused: %s", job.get("id"), err)
        return {"error": err.to_payload()}
    try:
        return await operation.run(job, spec)
    except RenderError as err:  # a job-level engine failure (per-clip ones are in the results)
        return {"error": err.to_payload()}


def warm_up() -> None:
    """Once per process, before taking jobs: probe NVENC so the first job does not pay for it."""
    select_encoder("auto")


def main() -> None:
    """Start the RunPod worker loop (or run one local test job; see the module docstring)."""
    logging.basicConfig(level=os.environ.get("API_GPU_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request line at INFO, query string included: that is a presigned URL's signature.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    here = os.path.dirname(os.path.abspath(__file__))
    if is_local_test():
        # Local test mode reads local files (test_input.json uses ../examples): allow the folder that
        # holds worker_image/ unless the caller chose the allowed input folders.
        os.environ.setdefault("API_GPU_LOCAL_INPUT_ROOTS", os.path.dirname(here))
        if "--test_input" not in " ".join(sys.argv) and not os.path.exists("test_input.json"):
            os.chdir(here)  # the SDK reads ./test_input.json; ours sits next to this file
    import runpod

    warm_up()
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
