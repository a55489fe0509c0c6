"""The seed API's response shapes, as pydantic models, and the helpers that fill them.

The seed answered ``{code, message, videos|video_url, execution, stats}``; we keep those names
(including the camelCase inside ``execution`` and ``stats``) so existing callers keep working, and add
per-video facts (``duration_s``, ``frames``, ``width``, ``height``, ``size_bytes``, ``encoder``) and a
``failed`` list.

Codes: 200 every item rendered; 207 some failed (see ``failed``); 422 all failed on bad input;
500 all failed, at least one for another reason.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from worker_image.errors import RenderError


class Execution(BaseModel):
    """Wall-clock span of the flow run (the seed's ``execution`` object)."""

    startTime: str = Field(..., description="ISO 8601 UTC start time.")
    endTime: str = Field(..., description="ISO 8601 UTC end time.")
    durationMs: int = Field(..., description="End minus start, milliseconds.")
    durationSeconds: float = Field(..., description="End minus start, seconds (3 decimals).")

    @classmethod
    def between(cls, start: datetime, end: datetime) -> "Execution":
        """The span from ``start`` to ``end`` (aware datetimes)."""
        ms = int(round((end - start).total_seconds() * 1000))
        return cls(startTime=start.isoformat(), endTime=end.isoformat(), durationMs=ms,
                   durationSeconds=round(ms / 1000, 3))


class Stats(BaseModel):
    """Counts for the request (the seed's ``stats``); ``jobId`` is the Prefect flow run id."""

    jobId: str
    total: int
    processed: int = Field(..., description="Items delivered and verified.")
    failed: int = Field(0, description="Items that failed (listed in ``failed``).")


class ErrorInfo(BaseModel):
    """A typed error, as the engine reports it."""

    type: str = Field(..., description="Error class, e.g. InputError, DownloadError.")
    message: str
    retryable: bool
    field: str | None = None


class FailedItem(BaseModel):
    """An item that did not render; the others are unaffected."""

    id: str
    filename: str
    error: ErrorInfo


class VideoEntry(BaseModel):
    """One delivered video (the seed's ``videos[]`` element plus measured facts)."""

    id: str
    video_url: str
    filename: str
    key: str = Field(..., description="Storage key (relative path under the renders folder, or S3 key).")
    url_kind: str = Field(..., description="file, public or presigned.")
    duration_s: float
    frames: int
    width: int = Field(..., description="Width in pixels.")
    height: int = Field(..., description="Height in pixels.")
    size_bytes: int
    encoder: str


class Img2VidResponse(BaseModel):
    """Result of the img2vid flow: the seed's shape, plus ``failed``."""

    code: int
    message: str
    videos: list[VideoEntry]
    failed: list[FailedItem] = Field(default_factory=list)
    execution: Execution
    stats: Stats


def error_info(exc: BaseException) -> ErrorInfo:
    """An ``ErrorInfo`` for any exception (engine errors keep their type, field and retryable)."""
    if isinstance(exc, RenderError):
        return ErrorInfo(type=type(exc).__name__, message=str(exc), retryable=exc.retryable, field=exc.field)
    return ErrorInfo(type=type(exc).__name__, message=str(exc) or repr(exc), retryable=False)


def outcome_code(total: int, failed: list[FailedItem]) -> tuple[int, str]:
    """(code, message) for ``total`` items of which ``failed`` failed (see module docstring)."""
    if not failed:
        return 200, f"{total} of {total} rendered"
    if len(failed) < total:
        return 207, f"{total - len(failed)} of {total} rendered; {len(failed)} failed"
    all_input = all(f.error.type == "InputError" or (f.error.type == "DownloadError" and not f.error.retryable)
                    for f in failed)
    return (422 if all_input else 500), f"0 of {total} rendered; {len(failed)} failed"


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_json(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of a response model."""
    return model.model_dump(mode="json")


# --- single-output operations: caption and addaudio ---------------------------------------------------


class SingleVideoResponse(BaseModel):
    """Result of a one-video operation (caption, addaudio): the seed's ``{code, message, video_url,
    execution, stats}`` plus facts measured on the delivered file, or the typed error.

    ``code`` is 200 when the video was delivered and verified; on failure 422 for bad input
    (``InputError``, or a ``DownloadError`` that is not retryable, e.g. a 404) and 500 otherwise, with
    ``error`` set and the measured facts None.
    """

    code: int = Field(..., description="200 delivered; 422 bad input; 500 any other failure.")
    message: str = Field(..., description="What happened, in words (on failure: the error type and message).")
    video_url: str | None = Field(None, description="URL of the delivered video (file://, public or presigned); None on failure.")
    filename: str = Field(..., description="The requested output file name (the seed's output_filename).")
    key: str | None = Field(None, description="Storage key ``<path>/<output_filename>``; None when the request was refused before planning.")
    url_kind: str | None = Field(None, description="file, public or presigned; None on failure.")
    duration_s: float | None = Field(None, description="Container duration of the output, seconds.")
    size_bytes: int | None = Field(None, description="Size of the delivered file in bytes.")
    encoder: str | None = Field(None, description="Video encoder: h264_nvenc, libx264, or (addaudio) copy.")
    error: ErrorInfo | None = Field(None, description="The typed error when the operation failed.")
    execution: Execution
    stats: Stats


class CaptionResponse(SingleVideoResponse):
    """Result of the caption flow (seed ``POST /video/caption``): see :class:`SingleVideoResponse`, plus
    what the engine did with the cues."""

    frames: int | None = Field(None, description="Video frames in the output (every input frame is kept).")
    width: int | None = Field(None, description="Output width in pixels (upright).")
    height: int | None = Field(None, description="Output height in pixels (upright).")
    subtitle_format: str | None = Field(None, description="srt, vtt or ass.")
    subtitle_encoding: str | None = Field(None, description="Text encoding detected, e.g. utf-8, cp1252.")
    cues: int | None = Field(None, description="Cues drawn.")
    cues_clipped: int | None = Field(None, description="Cues cut short at the end of the video.")
    cues_dropped: int | None = Field(None, description="Cues dropped: they start at or after the end of the video.")
    missing_glyphs: list[str] = Field(default_factory=list, description="Characters no installed font has, as 'U+XXXX'.")
    warnings: list[str] = Field(default_factory=list, description="What was tolerated or skipped, in words.")


class AddAudioResponse(SingleVideoResponse):
    """Result of the addaudio flow (seed ``POST /video/addaudio``): see :class:`SingleVideoResponse`, plus
    the stream durations and whether the video was copied."""

    video_duration_s: float | None = Field(None, description="Video stream duration of the output, seconds.")
    audio_duration_s: float | None = Field(None, description="Audio stream duration of the output, seconds (within 0.05 s of the video's).")
    video_copied: bool | None = Field(None, description="True when the video stream was copied packet for packet, not re-encoded.")


def failure_code(error: ErrorInfo) -> int:
    """The response code of a one-video operation that failed with ``error``: 422 for bad input, else 500
    (the same rule as :func:`outcome_code` when every item failed)."""
    return outcome_code(1, [FailedItem(id="", filename="", error=error)])[0]
