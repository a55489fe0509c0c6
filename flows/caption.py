"""The caption flow: burn subtitles into a video (the seed's ``POST /video/caption``).

Its parameters are the seed's request body, so a seed body is a valid ``parameters`` object::

    {"url_video": "https://.../video.mp4", "url_srt": "https://.../legendas.srt",
     "path": "Project Name/Video Title/videos/", "output_filename": "video_legendado.mp4"}

Optional: ``style`` (CaptionStyle: font, size, colours, outline or box, position, line length),
``settings`` (CaptionSettings: encoder, crf, x264_preset, cq, nvenc_preset, max_download_bytes),
``storage`` ("local" or an S3Bucket block name), ``backend`` ("local"). Steps: validate -> plan (key
``<path>/<output_filename>``, destination) -> render one task -> verify the output in storage -> publish
the result and a one-row table. A failed render ends the flow run Failed, still carrying the response
(code 422 for bad input, 500 otherwise, with the typed error).

Run it with no configuration (local backend, ``./renders``)::

    python -m flows.caption examples/caption_request.json
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.backends import render_one, require_operation, resolve_backend
from tasks.planning import CaptionSettings, check_urls_allowed, plan_caption
from tasks.responses import CaptionResponse, now_utc
from tasks.runpod_jobs import cancel_runpod_jobs
from tasks.single_video import finish_single_video
from tasks.storage import resolve_storage
from worker_image.contract import CaptionResult, CaptionStyle

from .cli import run_request_file


@flow(name="caption", task_runner=ThreadPoolTaskRunner(max_workers=1), validate_parameters=True,
      on_cancellation=[cancel_runpod_jobs])
def caption(
    url_video: str,
    url_srt: str,
    path: str,
    output_filename: str,
    style: CaptionStyle | None = None,
    settings: CaptionSettings | None = None,
    storage: str = "local",
    backend: str = "local",
) -> Any:
    """Burn the subtitles at ``url_srt`` into the video at ``url_video``; store ``<path>/<output_filename>``.

    Args:
        url_video: http(s) URL of the video (with the local backend, also a file:// URL or local path).
        url_srt: http(s) URL of the subtitles: SRT, WebVTT or ASS/SSA (local paths as for url_video).
        path: Output prefix (the seed's ``path``), e.g. ``"Project/Video/videos/"``.
        output_filename: Output file name, a plain name ending ``.mp4`` (no ``/``, no ``..``).
        style: Caption look for SRT/WebVTT; the engine's defaults (white Noto Sans, 5 % of the height,
            black outline, bottom centre) when omitted. ASS scripts keep their own styles.
        settings: Encoder settings (seed defaults: NVENC p4 / CQ 23, or libx264 medium / CRF 23) and the
            video download limit (500 MB).
        storage: ``"local"`` (``$API_GPU_RENDERS_DIR`` or ``./renders``) or an S3Bucket block name.
        backend: ``"local"`` (the worker_image engine in-process). Backends that do not render caption
            jobs (see ``tasks.backends.require_operation``) are refused.

    Returns:
        The response dict (see ``tasks.responses.CaptionResponse``). When the render failed, a Failed
        state carrying that same dict, with a message naming the error type, the field and the reason.

    Raises:
        RequestError: invalid ``output_filename`` or ``path``, local paths with a remote backend, unknown
            backend or one that does not render captions.
        pydantic.ValidationError: (before the run starts) ``style`` or ``settings`` out of bounds, naming the field.
    """
    started = now_utc()
    logger = get_run_logger()
    renderer = resolve_backend(backend)
    require_operation(renderer, "caption")
    store = resolve_storage(storage)
    check_urls_allowed({"url_video": url_video, "url_srt": url_srt},
                       local_inputs_ok=store.accepts_local_inputs() and renderer.local_inputs_ok)
    planned = plan_caption(url_video, url_srt, path, output_filename, store, style=style, settings=settings,
                           upload_expiry_s=renderer.upload_expiry_s)
    logger.info("caption -> key %s (storage %s, backend %s)", planned.key, store.name, backend)

    outcome = render_one(renderer, planned.job)
    return finish_single_video(operation="caption", planned=planned, outcome=outcome, store=store, started=started,
                               response_model=CaptionResponse, facts=_facts, summary=_summary,
                               table_columns=("cues",))


def _facts(r: CaptionResult) -> dict[str, Any]:
    """The measured facts of a delivered caption that go into the response."""
    return {"duration_s": r.duration_s, "frames": r.frames, "width": r.width_px, "height": r.height_px,
            "size_bytes": r.size_bytes, "encoder": r.encoder, "subtitle_format": r.subtitle_format,
            "subtitle_encoding": r.subtitle_encoding, "cues": r.cues, "cues_clipped": r.cues_clipped,
            "cues_dropped": r.cues_dropped, "missing_glyphs": r.missing_glyphs, "warnings": r.warnings}


def _summary(r: CaptionResult) -> str:
    """The success message."""
    return f"captioned {r.filename}: {r.cues} cues, {r.duration_s:.3f} s, {r.size_bytes} bytes"


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.caption REQUEST.json``: run the flow on a seed-shaped request body and print the
    result JSON. Exit status 0 when the video was delivered, 1 otherwise, 2 on bad usage."""
    return run_request_file(caption, "caption", argv)


if __name__ == "__main__":
    raise SystemExit(main())
