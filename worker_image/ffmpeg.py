"""FFmpeg argv builders (pure functions returning ``list[str]``) and the one runner that executes them.

Builders never touch the filesystem or run anything, so they are tested as golden argv. Every command
starts with ``-hide_banner -nostdin -loglevel error`` so that the stderr tail we keep is the cause of
a failure, not the banner. User-supplied names never enter an argv or a filtergraph: the engine copies
inputs to names it chooses first.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterable

from .errors import FFmpegError

log = logging.getLogger(__name__)

FFMPEG = os.environ.get("API_GPU_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("API_GPU_FFPROBE", "ffprobe")

#: Leading options of every FFmpeg command we run.
BASE_ARGS = ["-hide_banner", "-nostdin", "-loglevel", "error"]
#: Colour tags written on every H.264 output: BT.709 limited range, the HD video standard. Our Ken
#: Burns frames are converted from sRGB photos with the BT.709 matrix (see kenburns.py).
BT709_TAGS = ["-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
#: Kept lines of stderr in an FFmpegError.
STDERR_TAIL_LINES = 15


def h264_encoder_args(encoder: str, *, crf: int, x264_preset: str, cq: int, nvenc_preset: str) -> list[str]:
    """Encoder options for H.264 High, yuv420p.

    NVENC: preset p4, VBR with constant quality ``cq`` (seed: CQ 23), ``-b:v 0`` so CQ governs.
    libx264: CRF ``crf`` (seed: 23) at ``x264_preset``.

    Raises:
        ValueError: for an encoder other than ``h264_nvenc`` or ``libx264``.
    """
    if encoder == "h264_nvenc":
        codec = ["-c:v", "h264_nvenc", "-preset", nvenc_preset, "-rc", "vbr", "-cq", str(cq), "-b:v", "0"]
    elif encoder == "libx264":
        codec = ["-c:v", "libx264", "-preset", x264_preset, "-crf", str(crf)]
    else:
        raise ValueError(f"unknown H.264 encoder {encoder!r}")
    return [*codec, "-profile:v", "high", "-pix_fmt", "yuv420p"]


def rawvideo_to_mp4_argv(
    *,
    width_px: int,
    height_px: int,
    fps: int,
    frames: int,
    encoder_args: list[str],
    output: str | os.PathLike[str],
) -> list[str]:
    """Encode raw yuv420p frames from stdin into an MP4 with ``+faststart``.

    The input is ``width_px x height_px`` yuv420p (BT.709, limited range) at ``fps``; exactly ``frames``
    frames are written, so the container duration is frames / fps.
    """
    return [
        FFMPEG,
        *BASE_ARGS,
        "-f", "rawvideo",
        "-pix_fmt", "yuv420p",
        "-s", f"{width_px}x{height_px}",
        "-framerate", str(fps),
        *BT709_TAGS,
        "-i", "pipe:0",
        "-frames:v", str(frames),
        *encoder_args,
        *BT709_TAGS,
        "-r", str(fps),
        "-an",
        "-movflags", "+faststart",
        "-f", "mp4",
        "-y", str(output),
    ]


#: Plain file names (no folder, no filtergraph metacharacters) accepted by :func:`caption_argv`.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def caption_argv(
    *,
    input_name: str,
    subtitles_name: str,
    output_name: str,
    encoder_args: list[str],
    crop_px: tuple[int, int] | None = None,
) -> list[str]:
    """Burn an ASS script into a video: re-encode the first video stream, copy every audio stream.

    Run it with ``cwd`` set to the folder holding the three files: the filtergraph names the script
    relatively, so no path (and nothing the caller sent) ever enters the filtergraph.

    * Display-matrix rotation (phones) is applied by FFmpeg's default autorotation while decoding, before
      the filtergraph, so captions are drawn on the upright picture and the output carries no rotation.
    * ``crop_px`` (even width, height) trims the last column/row of an odd-sized picture, which
      yuv420p cannot hold.
    * ``format=yuv420p`` turns 10-bit and 4:2:2/4:4:4 input into 8-bit 4:2:0 before libass draws, so
      ``encoder_args`` (:func:`h264_encoder_args`) encode it as H.264 High.
    * ``shaping=complex`` asks libass for HarfBuzz shaping (Arabic joining, Indic reordering).
    * ``-fps_mode passthrough`` keeps every frame with its input timestamp: variable-frame-rate video
      stays in sync with its (copied) audio instead of being resampled to a constant rate. (FFmpeg's
      default for MP4 output is constant rate: a 20-frame VFR test clip came out with 41 frames.)
    * ``-c:a copy`` keeps the audio packets unchanged; ``0:a?`` makes audio optional.

    Raises:
        ValueError: a name is not a plain file name (letters, digits, ``_``, ``.``, ``-``).
    """
    for name in (input_name, subtitles_name, output_name):
        if not _PLAIN_NAME.match(name):
            raise ValueError(f"{name!r} is not a plain file name chosen by the engine")
    filters = []
    if crop_px is not None:
        filters.append(f"crop={crop_px[0]}:{crop_px[1]}:0:0")
    filters += ["format=yuv420p", f"ass=filename={subtitles_name}:shaping=complex"]
    return [
        FFMPEG,
        *BASE_ARGS,
        "-i", input_name,
        "-map", "0:v:0",
        "-map", "0:a?",
        "-vf", ",".join(filters),
        "-fps_mode", "passthrough",
        *encoder_args,
        "-c:a", "copy",
        "-movflags", "+faststart",
        "-f", "mp4",
        "-y", output_name,
    ]


def nvenc_probe_argv() -> list[str]:
    """A 1-frame NVENC encode to the null muxer: succeeds only where a working NVIDIA GPU and driver exist."""
    return [
        FFMPEG, *BASE_ARGS,
        "-f", "lavfi", "-i", "color=c=black:s=256x256:r=1:d=1",
        "-frames:v", "1", "-c:v", "h264_nvenc", "-f", "null", "-",
    ]


#: Linux fcntl F_SETPIPE_SZ; raw frames are MBs each, so a 1 MiB pipe (default 64 KiB) cuts the
#: number of writer/reader wake-ups per frame by 16.
_F_SETPIPE_SZ = 1031
_PIPE_BYTES = 1 << 20


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or over /proc/sys/fs/pipe-max-size: keep the default
        pass


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(
    argv: list[str],
    *,
    timeout_s: float,
    stdin_chunks: Iterable[bytes | memoryview] | None = None,
    what: str = "ffmpeg",
    cwd: str | os.PathLike[str] | None = None,
) -> str:
    """Run an FFmpeg/ffprobe command and return its stdout as text.

    Args:
        argv: The command, as built by one of the builders above.
        timeout_s: Wall-clock limit in seconds; on expiry the process is killed.
        stdin_chunks: Optional byte chunks written to the process's stdin (raw frames), in order.
            If the process exits early, the remaining chunks are not consumed.
        what: Short name of the step for the error message, e.g. ``"encode"``.
        cwd: Working directory of the process (None: ours). Commands whose filtergraph names a file
            relatively (``ass=filename=subs.ass``) run in the folder holding it.

    Returns:
        The process's stdout, decoded as UTF-8 (ffprobe JSON); empty for ffmpeg writing a file.

    Raises:
        FFmpegError: non-zero exit, timeout, a broken stdin pipe, or the binary missing. The error
            carries the argv, return code and the tail of stderr. Never retryable: the limits already
            allow several times the measured work, so a timeout means the input is too heavy (e.g.
            100,000 overlapping cues), and retrying would only burn GPU time again.
    """
    with tempfile.TemporaryFile() as stderr_file, tempfile.TemporaryFile() as stdout_file:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL,
                stdout=stdout_file,
                stderr=stderr_file,
                cwd=cwd,
            )
        except FileNotFoundError as exc:
            raise FFmpegError(f"{what}: {argv[0]} is not installed", argv=argv) from exc
        if stdin_chunks is not None and proc.stdin is not None:
            _grow_pipe(proc.stdin.fileno())
        killed = threading.Event()

        def _kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout_s, _kill)
        timer.start()
        broken_pipe = False
        try:
            if stdin_chunks is not None:
                assert proc.stdin is not None
                try:
                    for chunk in stdin_chunks:
                        proc.stdin.write(chunk)
                except BrokenPipeError:
                    broken_pipe = True
                finally:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        broken_pipe = True
            returncode = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        timed_out = killed.is_set()
        stderr_file.seek(0)
        stderr = stderr_file.read().decode("utf-8", "replace")
        stdout_file.seek(0)
        stdout = stdout_file.read().decode("utf-8", "replace")
    if timed_out:
        raise FFmpegError(f"{what} timed out after {timeout_s:g} s", argv=argv, returncode=returncode,
                          stderr_tail=_tail(stderr), retryable=False)
    if returncode != 0 or broken_pipe:
        raise FFmpegError(f"{what} failed with exit status {returncode}", argv=argv, returncode=returncode,
                          stderr_tail=_tail(stderr))
    return stdout
