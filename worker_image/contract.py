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


class ImageInput(_Model):
    """One still image of an img2vid request (the seed's ``images[]`` element).

    ``duracao`` (the seed's Portuguese field name) is accepted as an alias of ``duration_s``.
    Errors raised while validating one image name its ``id`` and the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(..., min_length=1, max_length=200, description="Caller's id for the image; echoed in results and errors.")
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
        validation_alias=AliasChoices("duration_s", "duracao"),
        description=f"Clip length in seconds (seed name: duracao); 0 < duration_s <= {MAX_CLIP_DURATION_S:g}.",
    )

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
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'image'}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(f"image {image_id!r}: {reasons}") from None


class RenderSettings(_Model):
    """Video render settings shared by every clip of a request. Defaults are the seed API's."""

    fps: int = Field(24, ge=1, le=60, description="Output frame rate, frames per second (seed: 24).")
    width_px: int = Field(1920, ge=16, le=4096, multiple_of=2, description="Output width in pixels, even (seed: 1920).")
    height_px: int = Field(1080, ge=16, le=4096, multiple_of=2, description="Output height in pixels, even (seed: 1080).")
    zoom_start: float = Field(1.0, ge=1.0, le=4.0, description="Zoom factor on the first frame; 1.0 shows the whole cover-cropped image.")
    zoom_end: float = Field(1.324, ge=1.0, le=4.0, description="Zoom factor on the last frame (seed: 1.324). Zoom is linear in frame number, centred.")
    encoder: Literal["auto", "h264_nvenc", "libx264"] = Field(
        "auto", description="H.264 encoder. 'auto' probes NVENC once per process and falls back to libx264."
    )
    crf: int = Field(23, ge=0, le=51, description="libx264 constant rate factor (seed: 23).")
    x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = Field(
        "medium", description="libx264 preset (FFmpeg's default, medium)."
    )
    cq: int = Field(23, ge=0, le=51, description="NVENC constant quality in VBR mode (seed: 23).")
    nvenc_preset: Literal["p1", "p2", "p3", "p4", "p5", "p6", "p7"] = Field("p4", description="NVENC preset (seed: p4).")
    background_color: str = Field(
        "#000000", description="#RRGGBB colour that transparent pixels are flattened onto (default black, like letterboxing)."
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS, ge=1, le=400_000_000, description="Images with more pixels (width x height) are refused as decompression bombs."
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
    duration_s: float = Field(..., gt=0, le=MAX_CLIP_DURATION_S, description="Clip length in seconds.")
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
