"""The addaudio flow: put an audio track on a video (the seed's ``POST /video/addaudio``).

Its parameters are the seed's request body, so a seed body is a valid ``parameters`` object::

    {"url_video": "https://.../video.mp4", "url_audio": "https://.../narracao.mp3",
     "path": "Project Name/Video Title/videos/", "output_filename": "video_com_audio.mp4"}

Optional: ``options`` (AddAudioOptions: replace or mix, length policy, volumes, ducking, fades, audio
bitrate, encoder for when the video must be re-encoded), ``storage`` ("local" or an S3Bucket block
name), ``backend`` ("local"). The defaults are the seed's behaviour: the new audio replaces the old,
the output is as long as the shorter input, and the video stream is copied whenever MP4 can hold it.
Steps: validate -> plan (key ``<path>/<output_filename>``, destination) -> render one task -> verify
the output in storage -> publish the result and a one-row table. A failed render ends the flow run
Failed, still carrying the response (code 422 for bad input, 500 otherwise, with the typed error).

Run it with no configuration (local backend, ``./renders``)::

    python -m flows.addaudio examples/addaudio_request.json
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.backends import render_one, require_operation, resolve_backend
from tasks.planning import check_urls_allowed, plan_addaudio
from tasks.reporting import publish_result, publish_table
from tasks.responses import AddAudioResponse, Execution, Stats, as_json, error_info, failure_code, now_utc
from tasks.runpod_jobs import cancel_runpod_jobs
from tasks.storage import resolve_storage
from worker_image.contract import AddAudioOptions, AddAudioResult

from .cli import run_request_file


@flow(name="addaudio", task_runner=ThreadPoolTaskRunner(max_workers=1), validate_parameters=True,
      on_cancellation=[cancel_runpod_jobs])
def addaudio(
    url_video: str,
    url_audio: str,
    path: str,
    output_filename: str,
    options: AddAudioOptions | None = None,
    storage: str = "local",
    backend: str = "local",
) -> Any:
    """Put the audio at ``url_audio`` on the video at ``url_video``; store ``<path>/<output_filename>``.

    Args:
        url_video: http(s) URL of the video (with the local backend, also a file:// URL or local path).
        url_audio: http(s) URL of the audio: MP3, WAV, M4A/AAC, Opus/Ogg or any file with an audio stream
            (local paths as for url_video).
        path: Output prefix (the seed's ``path``), e.g. ``"Project/Video/videos/"``.
        output_filename: Output file name, a plain name ending ``.mp4`` (no ``/``, no ``..``).
        options: Mode, length policy, gains, fades, encoder; the seed's behaviour (replace, shortest,
            copy the video) when omitted.
        storage: ``"local"`` (``$API_GPU_RENDERS_DIR`` or ``./renders``) or an S3Bucket block name.
        backend: ``"local"`` (the worker_image engine in-process). Backends that do not render addaudio
            jobs (see ``tasks.backends.require_operation``) are refused.

    Returns:
        The response dict (see ``tasks.responses.AddAudioResponse``). When the render failed, a Failed
        state carrying that same dict, with a message naming the error type, the field and the reason.

    Raises:
        RequestError: invalid ``output_filename`` or ``path``, local paths with a remote backend, unknown
            backend or one that does not render addaudio jobs.
        pydantic.ValidationError: (before the run starts) ``options`` out of bounds or inconsistent
            (e.g. ``duck`` with mode ``replace``), naming the field.
    """
    started = now_utc()
    logger = get_run_logger()
    renderer = resolve_backend(backend)
    require_operation(renderer, "addaudio")
    store = resolve_storage(storage)
    check_urls_allowed({"url_video": url_video, "url_audio": url_audio},
                       local_inputs_ok=store.accepts_local_inputs() and renderer.local_inputs_ok)
    planned = plan_addaudio(url_video, url_audio, path, output_filename, store, options=options,
                            upload_expiry_s=renderer.upload_expiry_s)
    logger.info("addaudio -> key %s (storage %s, backend %s)", planned.key, store.name, backend)

    outcome = render_one(renderer, planned.job)
    facts: dict[str, Any] = {}
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        result: AddAudioResult = outcome
        store.verify(planned.key, size_bytes=result.size_bytes, sha256=result.sha256)
        video_url, url_kind = store.url_for(planned.key)
        facts = {"video_url": video_url, "url_kind": url_kind, "duration_s": result.duration_s,
                 "video_duration_s": result.video_duration_s, "audio_duration_s": result.audio_duration_s,
                 "size_bytes": result.size_bytes, "encoder": result.encoder, "video_copied": result.video_copied}
        error = None
        how = "video copied" if result.video_copied else f"video re-encoded with {result.encoder}"
        code, message = 200, (f"added audio to {planned.job.filename}: {result.duration_s:.3f} s, {how}, "
                              f"{result.size_bytes} bytes")
    except Exception as exc:  # the job's typed failure goes into the response
        error = error_info(exc)
        code, message = failure_code(error), f"addaudio failed: {error.type}: {error.message}"
        logger.warning("addaudio to key %s failed: %s", planned.key, message)

    response = AddAudioResponse(
        code=code, message=message, filename=planned.job.filename, key=planned.key, error=error, **facts,
        execution=Execution.between(started, now_utc()),
        stats=Stats(jobId=str(flow_run.id or ""), total=1, processed=int(error is None), failed=int(error is not None)),
    )
    body = as_json(response)
    publish_table(
        [{"filename": response.filename, "key": response.key, "duration_s": response.duration_s,
          "video_copied": response.video_copied, "size_bytes": response.size_bytes,
          "url": response.video_url if error is None else f"FAILED: {error.type}: {error.message}"}],
        key="addaudio-table", description=f"addaudio: {message}",
    )
    publish_result(body, key="addaudio-result")
    logger.info("addaudio: %s", message)
    return _final_state(body, message, failed=error is not None)


def _final_state(body: dict[str, Any], message: str, *, failed: bool) -> State:
    """Completed when the video was delivered, else Failed; both carry the response dict."""
    return Failed(message=message, data=body) if failed else Completed(message=message, data=body)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.addaudio REQUEST.json``: run the flow on a seed-shaped request body and print the
    result JSON. Exit status 0 when the video was delivered, 1 otherwise, 2 on bad usage."""
    return run_request_file(addaudio, "addaudio", argv)


if __name__ == "__main__":
    raise SystemExit(main())
