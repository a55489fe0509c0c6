"""H.264 encoder choice: NVENC when this process can really use it, libx264 otherwise."""

from __future__ import annotations

import functools
import logging

from . import ffmpeg
from .errors import FFmpegError, InputError

log = logging.getLogger(__name__)

#: The NVENC probe is a 1-frame encode; a working GPU answers in well under this.
NVENC_PROBE_TIMEOUT_S = 30.0


@functools.cache
def nvenc_available() -> bool:
    """Probe NVENC once per process with a 1-frame encode to the null muxer.

    "Listed in ``ffmpeg -encoders``" is not enough: Debian's FFmpeg lists h264_nvenc everywhere, and it
    fails at open time without an NVIDIA driver. Only an actual encode tells.
    """
    try:
        ffmpeg.run(ffmpeg.nvenc_probe_argv(), timeout_s=NVENC_PROBE_TIMEOUT_S, what="nvenc probe")
    except FFmpegError as exc:
        log.info("NVENC unavailable, using libx264: %s", exc.stderr_tail.splitlines()[-1:] or exc)
        return False
    log.info("NVENC available")
    return True


def select_encoder(preference: str) -> str:
    """The encoder to use for ``preference`` ("auto", "h264_nvenc" or "libx264").

    Raises:
        InputError: (field ``settings.encoder``) h264_nvenc was demanded but does not work here.
    """
    if preference == "libx264":
        return "libx264"
    if nvenc_available():
        return "h264_nvenc"
    if preference == "h264_nvenc":
        raise InputError("h264_nvenc was requested but NVENC does not work on this worker", field="settings.encoder")
    return "libx264"
