"""Engine entry point for ``POST /video/addaudio``: put a new audio track on a video.

``render_addaudio`` mirrors ``engine.render_clip``: fetch both inputs to names we choose, measure them
with ffprobe, plan (``audio.plan_addaudio``), run the one FFmpeg command, verify the result with
ffprobe, then deliver it (atomic local rename or one presigned PUT). Every error names the job's
``filename`` as its item and, for bad input, the field (``url_video`` / ``url_audio``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from . import audio, ffmpeg, media_io
from .contract import AddAudioJob, AddAudioResult
from .encoders import select_encoder
from .errors import InputError, OutputVerificationError, RenderError, unexpected
from .probe import MediaInfo, StreamInfo, is_faststart, probe

log = logging.getLogger(__name__)

#: Time limit of the FFmpeg command: a fixed allowance plus one per second of output. A copy only
#: encodes audio (AAC runs at well over 50x real time on one core), so 2 s per output second is a
#: wide margin; a re-encode at 1080p/30 with libx264 "medium" runs at ~10 fps on 2 cores
#: (bench/kenburns.py), about 3 s per output second, so 10 s per second is a 3x margin.
TIMEOUT_BASE_S = 60.0
TIMEOUT_PER_OUTPUT_S_COPY = 2.0
TIMEOUT_PER_OUTPUT_S_ENCODE = 10.0
#: Decoding the new audio once to measure its exact length: MP3/AAC decode at >100x real time, so
#: this covers about an hour of audio on a slow core.
MEASURE_TIMEOUT_S = 300.0
#: Largest difference allowed between the output's audio and video stream durations, seconds
#: (the addaudio spec of issue 3).
AV_TOLERANCE_S = 0.05


def _probe_input(path: Path, *, field: str) -> MediaInfo:
    try:
        return probe(path)
    except InputError as err:
        err.field = err.field or field
        err.args = (err._render(),)
        raise


def _stream_kinds(info: MediaInfo) -> str:
    kinds = sorted({"cover picture" if s.attached_pic else s.codec_type for s in info.streams})
    return ", ".join(kinds) if kinds else "no streams"


def measure_inputs(video_path: Path, audio_path: Path) -> dict[str, Any]:
    """Probe the fetched inputs and measure what planning needs.

    Returns:
        ``{"video": StreamInfo, "video_info": MediaInfo, "timeline": VideoTimeline | None,
        "frame_s": float, "audio_s": float, "video_has_audio": bool}``; ``audio_s`` is the decoded
        length of the new audio in seconds (not its header's claim, see ``audio.audio_frames_argv``).

    Raises:
        InputError: ``url_video`` is not media or has no video stream; ``url_audio`` is not media or
            has no audio stream.
    """
    video_info = _probe_input(video_path, field="url_video")
    video = video_info.first("video")
    if video is None:
        raise InputError(f"the file has no video stream (it has: {_stream_kinds(video_info)})", field="url_video")
    audio_info = _probe_input(audio_path, field="url_audio")
    new_audio = audio_info.first("audio")
    if new_audio is None:
        raise InputError(f"the file has no audio stream (it has: {_stream_kinds(audio_info)})", field="url_audio")
    frame_s = audio.frame_duration_s(video.avg_frame_rate, video.r_frame_rate)
    packets_text = ffmpeg.run(audio.video_packets_argv(video_path), timeout_s=MEASURE_TIMEOUT_S, what="ffprobe packets")
    timeline = audio.parse_video_packets(packets_text, fallback_frame_s=frame_s)
    frames_text = ffmpeg.run(audio.audio_frames_argv(audio_path), timeout_s=MEASURE_TIMEOUT_S, what="audio decode")
    audio_s = audio.parse_decoded_duration(frames_text, sample_rate_hz=new_audio.sample_rate or audio.OUTPUT_SAMPLE_RATE_HZ)
    return {
        "video": video,
        "video_info": video_info,
        "timeline": timeline,
        "frame_s": frame_s,
        "audio_s": audio_s,
        "video_has_audio": video_info.first("audio") is not None,
    }


def verify_addaudio(path: Path, *, plan: audio.AddAudioPlan, source: StreamInfo) -> dict[str, float]:
    """Check an add-audio output has what we promise and return its measured durations.

    Checks: one video and one audio stream; audio AAC LC, 2 channels, 48 kHz; audio and video stream
    durations within :data:`AV_TOLERANCE_S`; container duration within one frame of ``plan.target_s``;
    a copied video has the source's codec, rotation and ``plan.frames`` frames; a re-encoded one is
    H.264 High and upright with the source's displayed size (cropped to even, see audio.EVEN_CROP); ``moov`` before ``mdat`` (+faststart).

    Returns:
        ``{"duration_s", "video_duration_s", "audio_duration_s"}`` in seconds.

    Raises:
        OutputVerificationError: any check fails (the file must not be delivered).
    """
    info = probe(path)
    videos = [s for s in info.streams if s.codec_type == "video"]
    audios = [s for s in info.streams if s.codec_type == "audio"]
    if len(videos) != 1 or len(audios) != 1:
        raise OutputVerificationError(f"output has {len(videos)} video and {len(audios)} audio streams, expected 1 and 1")
    video, sound = videos[0], audios[0]
    problems = []
    if (sound.codec_name, (sound.profile or "").upper()) != ("aac", "LC"):
        problems.append(f"audio {sound.codec_name}/{sound.profile}, expected aac/LC")
    if sound.channels != 2 or sound.sample_rate != audio.OUTPUT_SAMPLE_RATE_HZ:
        problems.append(f"audio {sound.channels} ch at {sound.sample_rate} Hz, expected 2 ch at 48000 Hz")
    if video.duration_s is None or sound.duration_s is None or info.duration_s is None:
        raise OutputVerificationError("output stream durations are unknown")
    drift_s = abs(video.duration_s - sound.duration_s)
    if drift_s > AV_TOLERANCE_S:
        problems.append(f"audio {sound.duration_s:.3f} s vs video {video.duration_s:.3f} s differ by more than "
                        f"{AV_TOLERANCE_S} s")
    if abs(info.duration_s - plan.target_s) > plan.frame_s + audio.TIME_SLACK_S:
        problems.append(f"duration {info.duration_s:.3f} s, expected {plan.target_s:.3f} s within one frame "
                        f"({plan.frame_s:.3f} s)")
    if plan.video_copied:
        if video.codec_name != source.codec_name:
            problems.append(f"video codec {video.codec_name}, expected the copied {source.codec_name}")
        if video.nb_frames is not None and video.nb_frames != plan.frames:
            problems.append(f"{video.nb_frames} video frames, expected {plan.frames} copied packets")
        if video.rotation_deg != source.rotation_deg:
            problems.append(f"rotation {video.rotation_deg:g} deg, expected the source's {source.rotation_deg:g} deg")
    else:
        upright = (source.width, source.height)
        if round(source.rotation_deg) % 180 == 90:
            upright = (source.height, source.width)
        if video.codec_name != "h264" or (video.profile or "").lower() != "high":
            problems.append(f"video codec {video.codec_name}/{video.profile}, expected h264/High")
        upright = (upright[0] // 2 * 2, upright[1] // 2 * 2)
        if (video.width, video.height) != upright or video.rotation_deg % 360 != 0:
            problems.append(f"video {video.width}x{video.height} rotated {video.rotation_deg:g} deg, expected "
                            f"{upright[0]}x{upright[1]} upright")
    if not is_faststart(path):
        problems.append("moov box is not before mdat (+faststart missing)")
    if problems:
        raise OutputVerificationError("; ".join(problems))
    return {"duration_s": info.duration_s, "video_duration_s": video.duration_s, "audio_duration_s": sound.duration_s}


def render_addaudio(job: AddAudioJob, *, allow_local_inputs: bool = False, workdir: Path | None = None) -> AddAudioResult:
    """Put ``job.url_audio`` on ``job.url_video`` and deliver the MP4 to ``job.output``.

    Args:
        job: Inputs, output file name and destination, and options (mode, length policy, gains, fades).
        allow_local_inputs: Accept ``file://`` URLs and paths (the local backend only).
        workdir: Scratch folder (a temporary one is made and removed when None).

    Returns:
        The measured properties of the delivered file.

    Raises:
        InputError: an input is not media, the video has no video stream or the audio no audio stream
            (``field`` says which), or the fades are longer than the output.
        DownloadError: an input URL failed (``retryable`` says whether asking again may help).
        FFmpegError: FFmpeg failed. OutputVerificationError: the file is not what we promise.
        UploadError: delivery failed. Every error names ``job.filename`` as its item.
    """
    options = job.options
    try:
        with tempfile.TemporaryDirectory(prefix="addaudio-", dir=workdir) as tmp:
            tmp_dir = Path(tmp)
            video_path = media_io.fetch(job.url_video, tmp_dir / "video.bin", max_bytes=options.max_download_bytes,
                                        allow_local=allow_local_inputs, field="url_video")
            audio_path = media_io.fetch(job.url_audio, tmp_dir / "audio.bin", max_bytes=options.max_download_bytes,
                                        allow_local=allow_local_inputs, field="url_audio")
            facts = measure_inputs(video_path, audio_path)
            video: StreamInfo = facts["video"]
            plan = audio.plan_addaudio(
                video_codec=video.codec_name, timeline=facts["timeline"],
                video_duration_s=video.duration_s or facts["video_info"].duration_s or 0.0,
                frame_s=facts["frame_s"], audio_duration_s=facts["audio_s"],
                video_has_audio=facts["video_has_audio"], options=options,
            )
            log.info("addaudio %s: video %s, audio %.3f s, target %.3f s, output %.3f s: %s", job.filename,
                     video.codec_name, facts["audio_s"], plan.target_s, plan.output_s, plan.reason)
            encoder = "copy"
            encoder_args = None
            if not plan.video_copied:
                encoder = select_encoder(options.encoder)
                encoder_args = options.encoder_args(encoder)
            encoded = tmp_dir / "output.mp4"
            argv = audio.addaudio_argv(plan, options, video=video_path, audio=audio_path, output=encoded,
                                       encoder_args=encoder_args)
            per_s = TIMEOUT_PER_OUTPUT_S_COPY if plan.video_copied else TIMEOUT_PER_OUTPUT_S_ENCODE
            ffmpeg.run(argv, timeout_s=TIMEOUT_BASE_S + per_s * plan.output_s, what="add audio")
            measured = verify_addaudio(encoded, plan=plan, source=video)
            size_bytes, digest = media_io.deliver(encoded, job.output)
    except RenderError as err:
        raise err.for_item(job.filename) from err.__cause__
    except Exception as exc:  # never let an unforeseen failure escape untyped (it would lose sibling results)
        raise unexpected(exc, item_id=job.filename) from exc
    log.info("addaudio %s: %.3f s, %d bytes, video %s", job.filename, measured["duration_s"], size_bytes, encoder)
    return AddAudioResult(filename=job.filename, size_bytes=size_bytes, sha256=digest,
                          video_copied=plan.video_copied, encoder=encoder, **measured)
