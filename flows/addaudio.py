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
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.backends import render_one, require_operation, resolve_backend
from tasks.planning import check_urls_allowed, plan_addaudio
from tasks.responses import AddAudioResponse, now_utc
from tasks.runpod_jobs import cancel_runpod_jobs
from tasks.single_video import finish_single_video
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
    return finish_single_video(operation="addaudio", planned=planned, outcome=outcome, store=store, started=started,
                               response_model=AddAudioResponse, facts=_facts, summary=_summary,
                               table_columns=("video_copied",))


def _facts(r: AddAudioResult) -> dict[str, Any]:
    """The measured facts of a delivered addaudio output that go into the response."""
    return {"duration_s": r.duration_s, "video_duration_s": r.video_duration_s,
            "audio_duration_s": r.audio_duration_s, "size_bytes": r.size_bytes, "encoder": r.encoder,
            "video_copied": r.video_copied}


def _summary(r: AddAudioResult) -> str:
    """The success message."""
    how = "video copied" if r.video_copied else f"video re-encoded with {r.encoder}"
    return f"added audio to {r.filename}: {r.duration_s:.3f} s, {how}, {r.size_bytes} bytes"


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.addaudio REQUEST.json``: run the flow on a seed-shaped request body and print the
    result JSON. Exit status 0 when the video was delivered, 1 otherwise, 2 on bad usage."""
    return run_request_file(addaudio, "addaudio", argv)


if __name__ == "__main__":
    raise SystemExit(main())
