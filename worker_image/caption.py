"""The ``caption`` entry point (seed ``POST /video/caption``): burn subtitles into a video.

``render_caption`` does the whole life of one job, like ``engine.render_clip``: fetch the subtitles and
the video to names we choose, parse the subtitles (failing fast, before the video download, when the
"subtitles" are an HTML page), inspect the video, write our ASS script, run FFmpeg in the scratch folder
so the filtergraph only ever names ``subs.ass``, verify the result with ffprobe, then deliver it.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ffmpeg, fonts, media_io, subtitles
from .contract import MAX_SUBTITLE_BYTES, CaptionJob, CaptionResult, CaptionStyle
from .encoders import select_encoder
from .errors import InputError, OutputVerificationError, RenderError, unexpected
from .probe import is_faststart, probe

log = logging.getLogger(__name__)

#: Encode time limit: a fixed allowance plus a per-frame one. Decoding, libass and libx264 "medium"
#: together ran at ~20 fps on 720p with 2 cores (tests/worker/test_caption.py); 0.5 s per frame is a
#: wide margin for 1080p.
ENCODE_TIMEOUT_BASE_S = 60.0
ENCODE_TIMEOUT_PER_FRAME_S = 0.5
#: Audio codecs the MP4 muxer accepts as a stream copy. Others (PCM, Vorbis...) are refused up front
#: with a clear reason instead of failing inside FFmpeg.
MP4_COPYABLE_AUDIO = frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "alac", "flac", "opus"})

# Names we choose inside the scratch folder; nothing the caller sent is used as a name.
VIDEO_NAME = "input.video"
SUBS_SOURCE_NAME = "subs.source"
SUBS_NAME = "subs.ass"
OUTPUT_NAME = "output.mp4"


@dataclass(frozen=True)
class VideoFacts:
    """What the caption render needs to know about its input video.

    Attributes:
        width_px: Upright output width (display rotation applied, rounded down to even).
        height_px: Upright output height (likewise).
        crop_px: ``(width_px, height_px)`` when the upright picture had an odd side, else None.
        duration_s: Video stream duration in seconds (container duration when the stream has none).
        container_duration_s: Container duration in seconds (audio may run longer than the video).
        fps: Average frame rate, frames per second (one frame = 1 / fps is the duration tolerance).
        frames: Frame count from the container header, when known.
        audio: ``(codec_name, channels)`` of every audio stream, in order.
    """

    width_px: int
    height_px: int
    crop_px: tuple[int, int] | None
    duration_s: float
    container_duration_s: float | None
    fps: float
    frames: int | None
    audio: tuple[tuple[str | None, int | None], ...]


def _rate(value: str | None) -> float | None:
    try:
        num, _, den = (value or "").partition("/")
        rate = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 and math.isfinite(rate) else None


def inspect_video(path: Path) -> VideoFacts:
    """Probe the input video and work out the upright output geometry.

    Raises:
        InputError: (field ``url_video``) not a video, no video stream, unknown duration, a display
            rotation that is not a multiple of 90 degrees, or an audio codec MP4 cannot carry.
    """
    try:
        info = probe(path)
    except InputError as err:
        raise InputError(err.message, field="url_video") from err
    video = info.first("video")
    if video is None or not video.width or not video.height:
        raise InputError("the file has no video stream", field="url_video")
    rotation = video.rotation_deg % 360
    if rotation % 90:
        raise InputError(f"display rotation of {video.rotation_deg:g} degrees is not a multiple of 90", field="url_video")
    width, height = (video.height, video.width) if rotation % 180 == 90 else (video.width, video.height)
    even = (width - width % 2, height - height % 2)
    if min(even) < 2:
        raise InputError(f"video is {width}x{height} pixels, too small to caption", field="url_video")
    duration = video.duration_s or info.duration_s
    if not duration or duration <= 0:
        raise InputError("the video's duration is unknown", field="url_video")
    fps = _rate(video.avg_frame_rate) or _rate(video.r_frame_rate)
    if fps is None:
        raise InputError("the video's frame rate is unknown", field="url_video")
    audio = tuple((s.codec_name, s.channels) for s in info.streams if s.codec_type == "audio")
    for codec, _ in audio:
        if codec not in MP4_COPYABLE_AUDIO:
            raise InputError(f"audio codec {codec!r} cannot be copied unchanged into MP4 "
                             f"(supported: {', '.join(sorted(MP4_COPYABLE_AUDIO))})", field="url_video")
    return VideoFacts(width_px=even[0], height_px=even[1], crop_px=even if even != (width, height) else None,
                      duration_s=duration, container_duration_s=info.duration_s, fps=fps, frames=video.nb_frames,
                      audio=audio)


@dataclass(frozen=True)
class PreparedSubtitles:
    """The ASS script to burn in, and what happened on the way.

    Attributes:
        ass_text: The script (our own for SRT/WebVTT, the caller's for ASS/SSA).
        format: ``"srt"``, ``"vtt"`` or ``"ass"``.
        encoding: Detected text encoding of the file.
        cues: Cues that will be drawn.
        cues_clipped: Cues cut at the end of the video.
        cues_dropped: Cues starting at or after the end of the video.
        missing_glyphs: ``"U+XXXX"`` labels of characters no installed font has.
        warnings: Notes for the result, in words.
    """

    ass_text: str
    format: str
    encoding: str
    cues: int
    cues_clipped: int
    cues_dropped: int
    missing_glyphs: tuple[str, ...]
    warnings: tuple[str, ...]


def prepare_subtitles(doc: subtitles.SubtitleDoc, style: CaptionStyle, facts: VideoFacts) -> PreparedSubtitles:
    """Fit a parsed subtitle file to the video and produce the ASS script to burn in.

    SRT/WebVTT cues are clipped to the video duration and written with ``style`` and per-script font
    runs (:class:`fonts.FontPlan`). ASS/SSA scripts pass through; their cues past the end are counted
    as dropped (libass simply never shows them). Either way, characters no installed font has are
    reported in ``missing_glyphs`` and logged, never silently drawn as boxes.

    Raises:
        InputError: (field ``style.font_family``) the style's font is not installed.
        RenderError: fontconfig tools missing.
    """
    kept, clipped, dropped = subtitles.clip_to_duration(doc.cues, facts.duration_s)
    warnings = list(doc.warnings)
    if doc.format == "ass":
        assert doc.ass_text is not None
        ass_text = doc.ass_text
        clipped = 0  # the script's own timing is kept
    else:
        plan = fonts.FontPlan(style.font_family)
        ass_text = subtitles.build_ass(kept, style, width_px=facts.width_px, height_px=facts.height_px, runs=plan.runs)
    if clipped:
        warnings.append(f"{clipped} cue(s) ran past the end of the video ({facts.duration_s:.3f} s) and were cut there")
    if dropped:
        warnings.append(f"{dropped} cue(s) start after the end of the video ({facts.duration_s:.3f} s) and were dropped")
    if not kept:
        warnings.append("no cue falls within the video; it is re-encoded without captions")
    missing = tuple(fonts.codepoint_label(cp) for cp in fonts.missing_codepoints("".join(c.text for c in kept)))
    if missing:
        warnings.append(f"no installed font has {', '.join(missing)}; these characters cannot be drawn")
        log.warning("caption characters without a glyph in any installed font: %s", ", ".join(missing))
    return PreparedSubtitles(ass_text=ass_text, format=doc.format, encoding=doc.encoding, cues=len(kept),
                             cues_clipped=clipped, cues_dropped=dropped, missing_glyphs=missing,
                             warnings=tuple(warnings))


def verify_caption(path: Path, facts: VideoFacts) -> dict[str, Any]:
    """Check a captioned file has what we promise and return its measured properties.

    Checks: H.264 High yuv420p video of the upright size with no display rotation left; video and
    container durations within one frame (1 / ``facts.fps``) of the input's; the same audio streams
    (codec and channels); ``moov`` before ``mdat`` (+faststart).

    Returns:
        ``{"frames", "duration_s", "width_px", "height_px"}``.

    Raises:
        OutputVerificationError: any check fails (the file must not be delivered).
    """
    info = probe(path)
    video = info.first("video")
    if video is None:
        raise OutputVerificationError("encoded file has no video stream")
    problems = []
    if video.codec_name != "h264" or (video.profile or "").lower() != "high":
        problems.append(f"codec {video.codec_name}/{video.profile}, expected h264/High")
    if video.pix_fmt != "yuv420p":
        problems.append(f"pix_fmt {video.pix_fmt}, expected yuv420p")
    if (video.width, video.height) != (facts.width_px, facts.height_px):
        problems.append(f"size {video.width}x{video.height}, expected {facts.width_px}x{facts.height_px}")
    if video.rotation_deg % 360:
        problems.append(f"output still carries a {video.rotation_deg:g} degree display rotation")
    frame_s = 1.0 / facts.fps
    out_video_s = video.duration_s or info.duration_s
    if out_video_s is None or abs(out_video_s - facts.duration_s) > frame_s + 1e-3:
        problems.append(f"video duration {out_video_s} s, expected {facts.duration_s:.3f} s within one frame")
    if facts.container_duration_s is not None and (
        info.duration_s is None or abs(info.duration_s - facts.container_duration_s) > frame_s + 1e-3
    ):
        problems.append(f"duration {info.duration_s} s, expected {facts.container_duration_s:.3f} s within one frame")
    audio = tuple((s.codec_name, s.channels) for s in info.streams if s.codec_type == "audio")
    if audio != facts.audio:
        problems.append(f"audio streams {list(audio)}, expected the input's {list(facts.audio)}")
    if not is_faststart(path):
        problems.append("moov box is not before mdat (+faststart missing)")
    if problems:
        raise OutputVerificationError("; ".join(problems))
    return {"frames": video.nb_frames or 0, "duration_s": info.duration_s, "width_px": video.width,
            "height_px": video.height}


def render_caption(job: CaptionJob, *, allow_local_inputs: bool = False, workdir: Path | None = None) -> CaptionResult:
    """Burn ``job.url_srt`` into ``job.url_video`` and deliver the MP4 to ``job.output``.

    Args:
        job: The caption job (inputs, style, encoder settings, destination).
        allow_local_inputs: Accept ``file://`` URLs and paths (the local backend only).
        workdir: Scratch folder (a temporary one is made and removed when None).

    Returns:
        The measured properties of the delivered file and what was done with the cues.

    Raises:
        InputError: bad subtitles (field ``url_srt``), bad video (``url_video``), font not installed
            (``style.font_family``).
        DownloadError: an input URL failed (``retryable`` says whether asking again may help).
        FFmpegError: FFmpeg failed. OutputVerificationError: the file is not what we promise.
        UploadError: delivery failed. Every error names ``job.id``.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="caption-", dir=workdir) as tmp:
            tmp_dir = Path(tmp)
            subs_path = media_io.fetch(job.url_srt, tmp_dir / SUBS_SOURCE_NAME, max_bytes=MAX_SUBTITLE_BYTES,
                                       allow_local=allow_local_inputs, field="url_srt")
            doc = subtitles.parse_subtitles(subs_path.read_bytes())
            video_path = media_io.fetch(job.url_video, tmp_dir / VIDEO_NAME, max_bytes=job.max_download_bytes,
                                        allow_local=allow_local_inputs, field="url_video")
            facts = inspect_video(video_path)
            prepared = prepare_subtitles(doc, job.style, facts)
            (tmp_dir / SUBS_NAME).write_text(prepared.ass_text, encoding="utf-8")
            encoder = select_encoder(job.encoder)
            argv = ffmpeg.caption_argv(
                input_name=VIDEO_NAME, subtitles_name=SUBS_NAME, output_name=OUTPUT_NAME, crop_px=facts.crop_px,
                encoder_args=job.encoder_args(encoder),
            )
            frames_estimate = facts.frames or math.ceil(facts.duration_s * facts.fps)
            ffmpeg.run(argv, timeout_s=ENCODE_TIMEOUT_BASE_S + ENCODE_TIMEOUT_PER_FRAME_S * frames_estimate,
                       what="caption encode", cwd=tmp_dir)
            encoded = tmp_dir / OUTPUT_NAME
            measured = verify_caption(encoded, facts)
            size_bytes, digest = media_io.deliver(encoded, job.output)
    except RenderError as err:
        raise err.for_item(job.id) from err.__cause__
    except Exception as exc:  # never let an unforeseen failure escape untyped (it would lose sibling results)
        raise unexpected(exc, item_id=job.id) from exc
    log.info("caption %s: %s cues (%s), %d frames, %d bytes, %s", job.id, prepared.cues, prepared.format,
             measured["frames"], size_bytes, encoder)
    return CaptionResult(
        id=job.id, filename=job.filename, size_bytes=size_bytes, sha256=digest, encoder=encoder, **measured,
        subtitle_format=prepared.format, subtitle_encoding=prepared.encoding, cues=prepared.cues,
        cues_clipped=prepared.cues_clipped, cues_dropped=prepared.cues_dropped,
        missing_glyphs=list(prepared.missing_glyphs), warnings=list(prepared.warnings),
    )
