"""Job contract: what a render job may contain, validated before any download or GPU second.

The same models validate in the Prefect flow (``flows/``) and in the RunPod handler. They are pydantic
v2 models with ``extra="forbid"``, so a misspelled option is an error, not silently ignored.

Defaults and bounds come from the seed API (``POST /video/img2vid``): 24 fps, 1920x1080, zoom
1.0 -> 1.324, H.264 with NVENC preset p4 / CQ 23 / VBR, or libx264 CRF 23 on CPU.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

#: Largest number of images in one img2vid request. The seed split batches over 50 images across
#: workers; 500 keeps one request's result listing and artifacts manageable.
MAX_IMAGES = 500
#: Longest clip per image, in seconds. Ken Burns clips for narrated videos run seconds, not minutes.
MAX_CLIP_DURATION_S = 300.0
#: Default decoded-pixel limit: a 61 MP full-frame photo fits; decompression bombs do not.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
#: Default limit on a downloaded input, in bytes (photos are a few MB; 50 MB leaves room for PNGs).
DEFAULT_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024

_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def input_kind(url: str) -> Literal["http", "local"]:
    """Classify an input reference.

    Returns ``"http"`` for http(s) URLs and ``"local"`` for ``file://`` URLs and plain filesystem paths.

    Raises:
        ValueError: for any other URL scheme (ftp:, s3:, data:, javascript:, ...) or an empty string.
    """
    if not url or not url.strip():
        raise ValueError("must not be empty")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise ValueError(f"{url!r} has no host")
        return "http"
    if scheme == "file" or scheme == "" or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
        return "local"
    raise ValueError(f"URL scheme {scheme!r} is not supported; use http(s) (or a local path with the local backend)")


def local_path(url: str) -> Path:
    """The filesystem path of a ``file://`` URL or plain path (see :func:`input_kind`)."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme.lower() == "file" else Path(url)


def _field_name(loc: tuple[Any, ...]) -> str:
    """A validation error location as the caller knows it: ``duration_s (sent as duracao)`` for the alias."""
    name = ".".join(str(p) for p in loc) or "image"
    return "duration_s (sent as duracao)" if name == "duracao" else name


class ImageInput(_Model):
    """One still image of an img2vid request (the seed's ``images[]`` element).

    ``duracao`` (the seed's Portuguese field name) is accepted as an alias of ``duration_s``.
    Errors raised while validating one image name its ``id`` and the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(..., min_length=1, max_length=200,
                    description="Caller's id for the image; echoed in results, errors and logs (no control characters).")
    image_url: str = Field(
        ...,
        min_length=1,
        max_length=8192,
        description="http(s) URL of the image. With the local backend only, also a file:// URL or a local path.",
    )
    duration_s: float = Field(
        ...,
        gt=0,
        le=MAX_CLIP_DURATION_S,
        allow_inf_nan=False,
        validation_alias=AliasChoices("duration_s", "duracao"),
        description=f"Clip length in seconds (seed name: duracao); 0 < duration_s <= {MAX_CLIP_DURATION_S:g}.",
    )

    @field_validator("id")
    @classmethod
    def _printable(cls, value: str) -> str:
        # ids go into logs and task-run names: a newline or an ANSI escape there forges log lines
        if _CONTROL_CHARS.search(value):
            raise ValueError("must not contain control characters (newlines, tabs, escapes)")
        return value

    @field_validator("image_url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        input_kind(value)
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_image(cls, data: Any, handler: Any) -> "ImageInput":
        try:
            return handler(data)
        except ValidationError as exc:
            image_id = data.get("id") if isinstance(data, dict) else getattr(data, "id", None)
            reasons = "; ".join(f"{_field_name(err['loc'])}: {err['msg']}" for err in exc.errors())
            raise ValueError(f"image {image_id!r}: {reasons}") from None


class EncoderSettings(_Model):
    """H.264 encoder choice and quality, shared by every operation that encodes video."""

    encoder: Literal["auto", "h264_nvenc", "libx264"] = Field(
        "auto", description="H.264 encoder. 'auto' probes NVENC once per process and falls back to libx264."
    )
    crf: int = Field(23, ge=0, le=51, description="libx264 constant rate factor (seed: 23).")
    x264_preset: Literal["superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = Field(
        "medium",
        description="libx264 preset (FFmpeg's default, medium). 'ultrafast' is not offered: it turns off CABAC "
        "and 8x8 transforms, so x264 signals Constrained Baseline instead of the High profile we promise.",
    )
    cq: int = Field(23, ge=0, le=51, description="NVENC constant quality in VBR mode (seed: 23).")
    nvenc_preset: Literal["p1", "p2", "p3", "p4", "p5", "p6", "p7"] = Field("p4", description="NVENC preset (seed: p4).")

    def encoder_args(self, encoder: str) -> list[str]:
        """FFmpeg options for ``encoder`` ("h264_nvenc" or "libx264") at these settings (see ffmpeg.h264_encoder_args)."""
        from .ffmpeg import h264_encoder_args

        return h264_encoder_args(encoder, crf=self.crf, x264_preset=self.x264_preset, cq=self.cq,
                                 nvenc_preset=self.nvenc_preset)


class RenderSettings(EncoderSettings):
    """Video render settings shared by every clip of a request. Defaults are the seed API's."""

    fps: int = Field(24, ge=1, le=60, description="Output frame rate, frames per second (seed: 24).")
    width_px: int = Field(1920, ge=16, le=4096, multiple_of=2, description="Output width in pixels, even (seed: 1920).")
    height_px: int = Field(1080, ge=16, le=4096, multiple_of=2, description="Output height in pixels, even (seed: 1080).")
    zoom_start: float = Field(1.0, ge=1.0, le=4.0, description="Zoom factor on the first frame; 1.0 shows the whole cover-cropped image.")
    zoom_end: float = Field(1.324, ge=1.0, le=4.0, description="Zoom factor on the last frame (seed: 1.324). Zoom is linear in frame number, centred.")
    background_color: str = Field(
        "#000000", description="#RRGGBB colour that transparent pixels are flattened onto (default black, like letterboxing)."
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS, ge=1, le=178_956_970,
        description="Images with more pixels (width x height) are refused as decompression bombs. At most "
        "178,956,970: Pillow refuses anything larger itself (twice its MAX_IMAGE_PIXELS default).",
    )
    max_download_bytes: int = Field(
        DEFAULT_MAX_DOWNLOAD_BYTES, ge=1, le=2 * 1024**3, description="Inputs larger than this many bytes are refused."
    )

    @field_validator("background_color")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX_COLOR.match(value):
            raise ValueError("must be a #RRGGBB colour, e.g. '#000000'")
        return value.lower()

    def frame_count(self, duration_s: float) -> int:
        """frames = round(duration_s x fps), at least 1."""
        return max(1, int(math.floor(duration_s * self.fps + 0.5)))


class FileOutput(_Model):
    """Deliver the clip to a local file (local backend). The engine writes a temporary sibling and renames
    it into place, so the final path never holds a partial file."""

    kind: Literal["file"] = "file"
    path: str = Field(..., min_length=1, description="Absolute destination path of the .mp4.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("must be an absolute path")
        return value


class PutUrlOutput(_Model):
    """Deliver the clip with one HTTP PUT to a presigned URL (S3/MinIO). Never log ``url``: it is a bearer credential."""

    kind: Literal["put_url"] = "put_url"
    url: str = Field(..., min_length=1, description="Presigned PUT URL; treat as a secret.")
    key: str = Field(..., min_length=1, description="The object key the URL writes to (safe to log).")


OutputTarget = Annotated[FileOutput | PutUrlOutput, Field(discriminator="kind")]


class ClipJob(_Model):
    """One Ken Burns clip to render: the image, its duration, and where the .mp4 goes."""

    id: str = Field(..., min_length=1, max_length=200, description="Image id from the request.")
    image_url: str = Field(..., min_length=1, max_length=8192, description="Input reference, see ImageInput.image_url.")
    duration_s: float = Field(..., gt=0, le=MAX_CLIP_DURATION_S, allow_inf_nan=False, description="Clip length in seconds.")
    filename: str = Field(..., min_length=1, max_length=255, description="Output file name, e.g. video_1.mp4.")
    output: OutputTarget


class Img2VidJob(_Model):
    """A render job: several clips sharing one set of settings (one RunPod job, or one local task each)."""

    operation: Literal["img2vid"] = "img2vid"
    clips: list[ClipJob] = Field(..., min_length=1, max_length=MAX_IMAGES)
    settings: RenderSettings = Field(default_factory=RenderSettings)


class ClipResult(_Model):
    """What the engine measured on a delivered clip (from ffprobe on the final bytes)."""

    id: str
    filename: str
    frames: int = Field(..., description="Video frames in the file (ffprobe nb_frames).")
    duration_s: float = Field(..., description="Container duration in seconds.")
    width_px: int
    height_px: int
    size_bytes: int
    sha256: str = Field(..., description="Hex SHA-256 of the delivered bytes.")
    encoder: str = Field(..., description="FFmpeg encoder used: h264_nvenc or libx264.")


# --- caption
#: Default limit on a downloaded caption video, in bytes. Seed caption videos are short phone clips
#: (tens of MB); 500 MB leaves room for a few minutes of 1080p at high bitrate.
DEFAULT_MAX_VIDEO_BYTES = 500 * 1024 * 1024
#: Limit on a downloaded subtitle file, in bytes. A two-hour film's SRT is about 100 KB.
MAX_SUBTITLE_BYTES = 5 * 1024 * 1024
_FONT_FAMILY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,63}$")


class CaptionStyle(_Model):
    """How SRT/WebVTT captions are drawn (ASS/SSA scripts keep their own styles).

    Sizes are percentages of the upright output picture, so a style looks the same at 720p and 1080p.
    Defaults give readable captions: white Noto Sans at 5 % of the height with a black outline,
    centred at the bottom, at most 42 characters per line (the common broadcast/streaming line limit).
    """

    font_family: str = Field(
        "Noto Sans",
        description="Font family installed on the worker (Noto families are). Characters it lacks come from "
        "Noto Sans Arabic / Hebrew / Devanagari / Thai / CJK / Symbols; letters, digits, spaces and '-' only.",
    )
    font_size_pct: float = Field(5.0, ge=1.0, le=20.0, description="Font size in percent of the video height (5 -> 54 px at 1080p).")
    primary_color: str = Field("#ffffff", description="Text colour, #RRGGBB.")
    outline_color: str = Field("#000000", description="Outline colour, #RRGGBB (unused when box is true).")
    outline_width_pct: float = Field(
        0.25, ge=0.0, le=5.0,
        description="Outline width in percent of the video height (0.25 -> 2.7 px at 1080p); with box=true, the box padding.",
    )
    box: bool = Field(False, description="Draw an opaque box behind each line (ASS BorderStyle 3) instead of an outline.")
    box_color: str = Field("#000000", description="Box colour, #RRGGBB (box=true only).")
    box_opacity: float = Field(0.6, ge=0.0, le=1.0, description="Box opacity, 0 (clear) to 1 (opaque) (box=true only).")
    position: Literal["bottom", "middle", "top"] = Field("bottom", description="Vertical position of the captions, centred horizontally.")
    margin_v_pct: float = Field(5.0, ge=0.0, le=45.0, description="Distance from the bottom (or top) edge, percent of the video height.")
    margin_h_pct: float = Field(5.0, ge=0.0, le=45.0, description="Minimum distance from the left and right edges, percent of the video width.")
    max_chars_per_line: int = Field(
        42, ge=8, le=200, description="Longest line in characters (CJK characters count 2); longer lines wrap at spaces."
    )

    @field_validator("primary_color", "outline_color", "box_color")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX_COLOR.match(value):
            raise ValueError("must be a #RRGGBB colour, e.g. '#ffffff'")
        return value.lower()

    @field_validator("font_family")
    @classmethod
    def _family(cls, value: str) -> str:
        if not _FONT_FAMILY.match(value):
            raise ValueError("must be a font family name of letters, digits, spaces and '-', e.g. 'Noto Sans'")
        return value


class CaptionJob(EncoderSettings):
    """Burn subtitles into a video (seed API ``POST /video/caption``): one input video, one subtitle file.

    The seed's ``path`` and ``output_filename`` become ``output`` and ``filename`` when the flow plans the
    job. Encoder settings and their defaults are those of :class:`RenderSettings`.
    """

    operation: Literal["caption"] = "caption"
    id: str = Field(..., min_length=1, max_length=200, description="Caller's id for the job; echoed in results and errors.")
    url_video: str = Field(
        ..., min_length=1, max_length=8192,
        description="http(s) URL of the video. With the local backend only, also a file:// URL or a local path.",
    )
    url_srt: str = Field(
        ..., min_length=1, max_length=8192,
        description="http(s) URL of the subtitles: SRT, WebVTT or ASS/SSA (local paths as for url_video).",
    )
    filename: str = Field(..., min_length=1, max_length=255, description="Output file name (seed: output_filename), e.g. video_legendado.mp4.")
    output: OutputTarget
    style: CaptionStyle = Field(default_factory=CaptionStyle, description="Caption look for SRT/WebVTT input.")
    max_download_bytes: int = Field(
        DEFAULT_MAX_VIDEO_BYTES, ge=1, le=8 * 1024**3, description="A video larger than this many bytes is refused."
    )

    @field_validator("url_video", "url_srt")
    @classmethod
    def _scheme(cls, value: str) -> str:
        input_kind(value)
        return value


class CaptionResult(_Model):
    """What the engine measured on a delivered captioned video (ffprobe on the final bytes), and what it
    did with the cues."""

    id: str
    filename: str
    frames: int = Field(..., description="Video frames in the file (ffprobe nb_frames); every input frame is kept.")
    duration_s: float = Field(..., description="Container duration in seconds; the input's within one frame.")
    width_px: int = Field(..., description="Upright width (after the input's display rotation was applied).")
    height_px: int = Field(..., description="Upright height.")
    size_bytes: int
    sha256: str = Field(..., description="Hex SHA-256 of the delivered bytes.")
    encoder: str = Field(..., description="FFmpeg encoder used: h264_nvenc or libx264.")
    subtitle_format: Literal["srt", "vtt", "ass"] = Field(..., description="Format of the subtitle file.")
    subtitle_encoding: str = Field(..., description="Text encoding detected, e.g. utf-8, utf-8-sig, utf-16-le, cp1252.")
    cues: int = Field(..., description="Cues drawn (after dropping those that start after the video ends).")
    cues_clipped: int = Field(0, description="Cues cut short at the end of the video.")
    cues_dropped: int = Field(0, description="Cues dropped because they start at or after the end of the video.")
    missing_glyphs: list[str] = Field(
        default_factory=list, description="Characters no installed font has, as 'U+XXXX'; drawn as empty boxes."
    )
    warnings: list[str] = Field(default_factory=list, description="What was tolerated or skipped, in words.")


# --- addaudio
#: Default limit on each downloaded add-audio input (video or audio), in bytes. Seed videos are short
#: clips (tens of MB); 1 GiB leaves room for a few minutes of 1080p at a high bitrate.
DEFAULT_MAX_MEDIA_BYTES = 1024**3
#: Longest fade-in or fade-out, in seconds.
MAX_FADE_S = 60.0
#: Default gain of the video's own track in ``mix`` mode, dB: -12 dB keeps it audible under a voice.
DEFAULT_ORIGINAL_VOLUME_DB = -12.0


class AddAudioOptions(EncoderSettings):
    """How the new audio goes onto the video (seed API ``POST /video/addaudio``; options are ours).

    The defaults are the seed's behaviour: the video's own audio is replaced, the output lasts as long as
    the shorter input, and the video stream is copied (not re-encoded) whenever MP4 can hold it. The
    encoder fields apply only when the video must be re-encoded (codec MP4 cannot hold, a held last
    frame, or no copy cut within one frame); their defaults are :class:`RenderSettings`'.
    """

    mode: Literal["replace", "mix"] = Field(
        "replace",
        description="'replace' (seed): the output has only the new audio. 'mix': the video's own track is kept "
        "at original_volume_db under the new audio (a video without audio gets just the new audio).",
    )
    length_policy: Literal["shortest", "video", "audio"] = Field(
        "shortest",
        description="Output length: 'shortest' (seed) the shorter input; 'video' the video's (audio padded with "
        "silence or cut); 'audio' the audio's (video cut, or its last frame held, which re-encodes it).",
    )
    volume_db: float = Field(0.0, ge=-60.0, le=20.0, description="Gain of the new audio in dB (0 keeps its level).")
    original_volume_db: float = Field(
        DEFAULT_ORIGINAL_VOLUME_DB, ge=-60.0, le=20.0, description="mix only: gain of the video's own track in dB."
    )
    duck: bool = Field(
        False, description="mix only: lower the video's own track while the new audio is loud (sidechain compression)."
    )
    fade_in_s: float = Field(0.0, ge=0.0, le=MAX_FADE_S, description="Audio fade-in from the start, seconds (0: none).")
    fade_out_s: float = Field(
        0.0, ge=0.0, le=MAX_FADE_S, description="Audio fade-out ending at the end of the output, seconds (0: none)."
    )
    audio_bitrate_kbps: int = Field(192, ge=32, le=512, description="AAC LC stereo 48 kHz bitrate, kbit/s.")
    max_download_bytes: int = Field(
        DEFAULT_MAX_MEDIA_BYTES, ge=1, le=8 * 1024**3, description="Either input larger than this many bytes is refused."
    )

    @model_validator(mode="after")
    def _mix_only(self) -> "AddAudioOptions":
        if self.mode == "replace" and (self.duck or self.original_volume_db != DEFAULT_ORIGINAL_VOLUME_DB):
            raise ValueError("duck and original_volume_db apply only with mode='mix' (replace drops the original track)")
        return self


class AddAudioJob(_Model):
    """Put an audio track on a video (seed API ``POST /video/addaudio``): one video, one audio file.

    The seed's ``path`` and ``output_filename`` become ``output`` and ``filename`` when the flow plans the
    job. Errors name ``filename`` as their item.
    """

    operation: Literal["addaudio"] = "addaudio"
    url_video: str = Field(
        ..., min_length=1, max_length=8192,
        description="http(s) URL of the video. With the local backend only, also a file:// URL or a local path.",
    )
    url_audio: str = Field(
        ..., min_length=1, max_length=8192,
        description="http(s) URL of the audio: MP3, WAV, M4A/AAC, Opus/Ogg, or any file with an audio stream "
        "(local paths as for url_video).",
    )
    filename: str = Field(..., min_length=1, max_length=255, description="Output file name (seed: output_filename), e.g. video_com_audio.mp4.")
    output: OutputTarget
    options: AddAudioOptions = Field(default_factory=AddAudioOptions, description="Mode, length policy, volumes, fades, encoder.")

    @field_validator("url_video", "url_audio")
    @classmethod
    def _scheme(cls, value: str) -> str:
        input_kind(value)
        return value


class AddAudioResult(_Model):
    """What the engine measured on a delivered add-audio video (ffprobe on the final bytes)."""

    filename: str = Field(..., description="Output file name from the job.")
    duration_s: float = Field(..., description="Container duration in seconds; the target length within one frame.")
    video_duration_s: float = Field(..., description="Video stream duration in seconds.")
    audio_duration_s: float = Field(..., description="Audio stream duration in seconds; within 0.05 s of the video's.")
    size_bytes: int = Field(..., description="Size of the delivered file in bytes.")
    sha256: str = Field(..., description="Hex SHA-256 of the delivered bytes.")
    video_copied: bool = Field(..., description="True when the video stream was copied packet for packet, not re-encoded.")
    encoder: str = Field(..., description="Video encoder: 'copy', h264_nvenc or libx264.")
