"""ffprobe wrapper: media facts as a pydantic model, plus the MP4 ``+faststart`` check."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from . import ffmpeg
from .errors import InputError

#: ffprobe is quick; a minute covers a slow disk or a large file's index.
PROBE_TIMEOUT_S = 60.0


class StreamInfo(BaseModel):
    """One stream as ffprobe reports it (only the fields we use)."""

    model_config = ConfigDict(extra="ignore")

    index: int
    codec_type: str
    codec_name: str | None = None
    profile: str | None = None
    pix_fmt: str | None = None
    width: int | None = None
    height: int | None = None
    nb_frames: int | None = None
    duration_s: float | None = Field(None, description="Stream duration in seconds, when known.")
    avg_frame_rate: str | None = None
    r_frame_rate: str | None = None
    channels: int | None = None
    sample_rate: int | None = None
    rotation_deg: float = Field(0.0, description="Display-matrix rotation in degrees (phones), 0 if none.")
    attached_pic: bool = Field(False, description="A cover picture (MP3/M4A artwork), not a video stream.")


class MediaInfo(BaseModel):
    """What ffprobe says about a file: container duration and streams."""

    model_config = ConfigDict(extra="ignore")

    format_name: str
    duration_s: float | None
    size_bytes: int
    streams: list[StreamInfo]

    def first(self, codec_type: str) -> StreamInfo | None:
        """The first stream of ``codec_type`` ("video", "audio", "subtitle"), or None. Cover pictures
        (``attached_pic``) are not video: an MP3 with artwork has no video stream."""
        return next((s for s in self.streams if s.codec_type == codec_type and not s.attached_pic), None)


def ffprobe_argv(path: str | os.PathLike[str], *, count_frames: bool = False) -> list[str]:
    """ffprobe JSON of format and streams; ``count_frames`` decodes to count video frames exactly."""
    argv = [ffmpeg.FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
    if count_frames:
        argv += ["-count_frames"]
    return [*argv, str(path)]


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _tag_duration(tags: dict[str, str]) -> float | None:
    """Matroska/WebM streams have no ``duration`` field; their muxer writes a ``DURATION`` tag
    ``HH:MM:SS.nnnnnnnnn`` instead (Matroska spec, "Tags": DURATION). None when absent or malformed."""
    raw = tags.get("DURATION") or tags.get("duration")
    try:
        hours, minutes, seconds = str(raw).split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (TypeError, ValueError):
        return None


def probe(path: str | os.PathLike[str], *, count_frames: bool = False) -> MediaInfo:
    """Probe a media file.

    Raises:
        InputError: when ffprobe cannot read the file as media (names no field; callers add it).
    """
    try:
        raw = ffmpeg.run(ffprobe_argv(path, count_frames=count_frames), timeout_s=PROBE_TIMEOUT_S, what="ffprobe")
    except Exception as exc:  # FFmpegError: not media, or unreadable
        raise InputError(f"not a readable media file ({exc})") from exc
    data = json.loads(raw or "{}")
    fmt = data.get("format") or {}
    streams = []
    for s in data.get("streams", []):
        rotation = 0.0
        for side in s.get("side_data_list", []) or []:
            if "rotation" in side:
                rotation = float(side["rotation"])
        nb = s.get("nb_read_frames") if count_frames else s.get("nb_frames")
        streams.append(
            StreamInfo(
                index=s.get("index", 0),
                codec_type=s.get("codec_type", ""),
                codec_name=s.get("codec_name"),
                profile=s.get("profile"),
                pix_fmt=s.get("pix_fmt"),
                width=s.get("width"),
                height=s.get("height"),
                nb_frames=int(nb) if nb not in (None, "N/A") else None,
                duration_s=_float(s.get("duration")) or _tag_duration(s.get("tags") or {}),
                avg_frame_rate=s.get("avg_frame_rate"),
                r_frame_rate=s.get("r_frame_rate"),
                channels=s.get("channels"),
                sample_rate=int(s["sample_rate"]) if s.get("sample_rate") else None,
                rotation_deg=rotation,
                attached_pic=bool((s.get("disposition") or {}).get("attached_pic")),
            )
        )
    return MediaInfo(
        format_name=fmt.get("format_name", ""),
        duration_s=_float(fmt.get("duration")),
        size_bytes=int(fmt.get("size") or Path(path).stat().st_size),
        streams=streams,
    )


def mp4_top_level_boxes(path: str | os.PathLike[str], limit: int = 64) -> list[str]:
    """Names of the top-level ISO-BMFF boxes in file order, e.g. ``["ftyp", "moov", "mdat"]``.

    Reads only box headers (ISO/IEC 14496-12 section 4.2: 32-bit size + 4-char type, size 1 means a
    64-bit size follows, size 0 means "to end of file").
    """
    names: list[str] = []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        pos = 0
        while pos + 8 <= end and len(names) < limit:
            fh.seek(pos)
            size, kind = struct.unpack(">I4s", fh.read(8))
            header = 8
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0]
                header = 16
            elif size == 0:
                size = end - pos
            names.append(kind.decode("latin-1"))
            if size < header:
                break
            pos += size
    return names


def is_faststart(path: str | os.PathLike[str]) -> bool:
    """True when the ``moov`` box precedes ``mdat`` (progressive playback without a full download)."""
    boxes = mp4_top_level_boxes(path)
    return "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")
