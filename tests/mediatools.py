"""Test helpers that read rendered media back: decoded planes, ffprobe facts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np


def decode_yuv420p(path: Path, width: int, height: int, *, frames: list[int] | None = None) -> np.ndarray:
    """Decode a video's frames (all, or the listed 0-based indices) to an (N, H*W*3/2) uint8 yuv420p array."""
    vf = []
    if frames is not None:
        vf = ["-vf", "select='" + "+".join(f"eq(n\\,{n})" for n in frames) + "'", "-fps_mode", "passthrough"]
    raw = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), *vf,
         "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        check=True, capture_output=True,
    ).stdout
    size = width * height * 3 // 2
    return np.frombuffer(raw, np.uint8).reshape(-1, size)


def luma(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """The Y planes of ``decode_yuv420p`` output: (N, H, W)."""
    return frames[:, : width * height].reshape(-1, height, width)


def ffprobe_json(path: Path) -> dict:
    """ffprobe's JSON for streams and format, frames counted by decoding (nb_read_frames)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)
