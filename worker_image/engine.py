"""The render engine's entry points: one Ken Burns clip, or a whole img2vid job.

``render_clip`` does the full life of one clip: fetch the input to a name we choose, decode it,
render and encode, verify the encoded file with ffprobe, then deliver it (atomic local rename or one
presigned PUT). The local backend calls it in-process; the RunPod handler calls ``run_img2vid_job``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import ffmpeg, media_io
from .contract import ClipJob, ClipResult, Img2VidJob, RenderSettings
from .encoders import select_encoder
from .errors import OutputVerificationError, RenderError, unexpected
from .imaging import load_image
from .kenburns import KenBurnsClip
from .probe import is_faststart, probe

log = logging.getLogger(__name__)

#: Encode time limit: a fixed allowance plus a per-frame one. libx264 "medium" at 1080p runs at
#: ~10 fps on 2 cores (bench/kenburns.py), so 0.5 s per frame is a 5x margin.
ENCODE_TIMEOUT_BASE_S = 60.0
ENCODE_TIMEOUT_PER_FRAME_S = 0.5


def verify_clip(path: Path, *, settings: RenderSettings, frames: int) -> dict[str, Any]:
    """Check an encoded clip has what we promise and return its measured properties.

    Checks: one H.264 High video stream, yuv420p, the requested size, exactly ``frames`` frames, a
    container duration within one frame of frames / fps, and ``moov`` before ``mdat`` (+faststart).

    Raises:
        OutputVerificationError: any check fails (the file must not be delivered).
    """
    info = probe(path)
    video = info.first("video")
    problems = []
    if video is None:
        raise OutputVerificationError("encoded file has no video stream")
    if video.codec_name != "h264" or (video.profile or "").lower() != "high":
        problems.append(f"codec {video.codec_name}/{video.profile}, expected h264/High")
    if video.pix_fmt != "yuv420p":
        problems.append(f"pix_fmt {video.pix_fmt}, expected yuv420p")
    if (video.width, video.height) != (settings.width_px, settings.height_px):
        problems.append(f"size {video.width}x{video.height}, expected {settings.width_px}x{settings.height_px}")
    if video.nb_frames != frames:
        problems.append(f"{video.nb_frames} frames, expected {frames}")
    expected_s = frames / settings.fps
    if info.duration_s is None or abs(info.duration_s - expected_s) > 1.0 / settings.fps + 1e-6:
        problems.append(f"duration {info.duration_s} s, expected {expected_s:.3f} s within one frame")
    if not is_faststart(path):
        problems.append("moov box is not before mdat (+faststart missing)")
    if problems:
        raise OutputVerificationError("; ".join(problems))
    return {"frames": frames, "duration_s": info.duration_s, "width_px": video.width, "height_px": video.height}


def render_clip(
    clip: ClipJob,
    settings: RenderSettings,
    *,
    allow_local_inputs: bool = False,
    workdir: Path | None = None,
    on_frames: Callable[[int, int], None] | None = None,
) -> ClipResult:
    """Render one Ken Burns clip and deliver it to ``clip.output``.

    Args:
        clip: The image, duration, output file name and destination.
        settings: Shared render settings.
        allow_local_inputs: Accept ``file://`` URLs and paths (the local backend only).
        workdir: Scratch folder (a temporary one is made and removed when None).
        on_frames: Optional progress callback ``(frames_done, frames_total)``, called every 24 frames.

    Returns:
        The measured properties of the delivered clip.

    Raises:
        InputError: bad image (not an image, over the pixel limit, dead local path, ...).
        DownloadError: the image URL failed (``retryable`` says whether asking again may help).
        FFmpegError: the encoder failed. OutputVerificationError: the file is not what we promise.
        UploadError: delivery failed. Every error names ``clip.id``.
    """
    frames = settings.frame_count(clip.duration_s)
    try:
        with tempfile.TemporaryDirectory(prefix="kenburns-", dir=workdir) as tmp:
            tmp_dir = Path(tmp)
            source = media_io.fetch(clip.image_url, tmp_dir / "input.bin", max_bytes=settings.max_download_bytes,
                                    allow_local=allow_local_inputs, field="image_url")
            zoom_max = max(settings.zoom_start, settings.zoom_end)
            image = load_image(
                source,
                max_pixels=settings.max_image_pixels,
                background_color=settings.background_color,
                needed_size=(round(settings.width_px * zoom_max), round(settings.height_px * zoom_max)),
            )
            renderer = KenBurnsClip(image, width_px=settings.width_px, height_px=settings.height_px, frames=frames,
                                    zoom_start=settings.zoom_start, zoom_end=settings.zoom_end)
            del image
            encoder = select_encoder(settings.encoder)
            encoded = tmp_dir / "output.mp4"
            argv = ffmpeg.rawvideo_to_mp4_argv(
                width_px=settings.width_px, height_px=settings.height_px, fps=settings.fps, frames=frames,
                encoder_args=settings.encoder_args(encoder),
                output=encoded,
            )

            def frames_with_progress():
                for n, frame in enumerate(renderer.iter_frames(), start=1):
                    yield frame
                    if on_frames and (n % 24 == 0 or n == frames):
                        on_frames(n, frames)

            ffmpeg.run(argv, timeout_s=ENCODE_TIMEOUT_BASE_S + ENCODE_TIMEOUT_PER_FRAME_S * frames,
                       stdin_chunks=frames_with_progress(), what="encode")
            measured = verify_clip(encoded, settings=settings, frames=frames)
            size_bytes, digest = media_io.deliver(encoded, clip.output)
    except RenderError as err:
        raise err.for_item(clip.id) from err.__cause__
    except Exception as exc:  # never let an unforeseen failure escape untyped (it would lose sibling results)
        raise unexpected(exc, item_id=clip.id) from exc
    log.info("clip %s: %d frames, %d bytes, %s", clip.id, frames, size_bytes, encoder)
    return ClipResult(id=clip.id, filename=clip.filename, size_bytes=size_bytes, sha256=digest, encoder=encoder,
                      **measured)


def run_img2vid_job(
    job: Img2VidJob,
    *,
    allow_local_inputs: bool = False,
    on_clip_done: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Render every clip of a job; one clip's failure does not stop the others.

    Returns:
        ``{"results": [...]}`` in job order; each element is either a ClipResult dict with
        ``"ok": True`` or ``{"ok": False, "id", "filename", "error": {type, message, retryable, ...}}``.
    """
    results: list[dict[str, Any]] = []
    for index, clip in enumerate(job.clips, start=1):
        try:
            result = render_clip(clip, job.settings, allow_local_inputs=allow_local_inputs)
            results.append({"ok": True, **result.model_dump()})
        except RenderError as err:
            log.warning("clip %s failed: %s", clip.id, err)
            results.append({"ok": False, "id": clip.id, "filename": clip.filename, "error": err.to_payload()})
        if on_clip_done:
            on_clip_done(index, len(job.clips))
    return {"results": results}
