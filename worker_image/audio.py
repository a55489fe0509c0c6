"""Add an audio track to a video (``POST /video/addaudio``): measuring inputs, planning, argv.

Pure functions only: builders return ``list[str]`` argv or a filtergraph string, parsers read the text
ffprobe printed, and :func:`plan_addaudio` decides the output length and whether the video stream can
be copied. Nothing here runs a process; ``addaudio.py`` does that through ``ffmpeg.run``.

How a render is planned:

* **Target length** ``target_s`` follows the length policy: ``shortest`` (the seed's behaviour) is
  the shorter of the video and the audio, ``video`` is the video's length, ``audio`` the audio's.
* **Video**: copied (never re-encoded) when its codec fits MP4 and a copy can end within one frame of
  ``target_s``. A copy can only be cut at a *decode-order* packet boundary; with B-frames not every
  boundary leaves a gap-free picture sequence (see :func:`copy_cut_points`), so the nearest valid one
  is used, and when none lies within one frame the video is re-encoded instead. Holding the last
  frame (policy ``audio`` with audio longer than the video) always re-encodes: ``tpad`` is a filter.
* **Audio**: resampled to AAC LC stereo 48 kHz (5.1 is down-mixed by libswresample's standard matrix,
  mono is duplicated), gain applied, then padded with silence (``apad``) or cut (``atrim``) to the
  *video's actual output length* ``output_s``, sample-exact, so the two streams end together.
* **Fades** (``afade``) are applied to the final audio; the fade-out ends at ``output_s``.
* **Mix**: the video's own track (opened as a second input, so a copy cut never shortens it) is
  aligned to t=0, given ``original_volume_db``, optionally ducked by ``sidechaincompress`` keyed by
  the new audio, and summed with it (``amix`` with ``normalize=0``, so the dB values are what you get).

Only names we chose (``video.bin``, ``audio.bin``, ``output.mp4``) enter an argv; user text never
enters a filtergraph (every value in it is a number we formatted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from . import ffmpeg
from .contract import AddAudioOptions
from .errors import InputError

#: Output audio sample rate, Hz. 48 kHz is the video-production rate (EBU R 128 / AES recommend it).
OUTPUT_SAMPLE_RATE_HZ = 48_000
#: Output channel layout: stereo. 5.1 is down-mixed with libswresample's default matrix (ITU-R BS.775
#: coefficients: centre and surrounds at -3 dB, LFE dropped).
OUTPUT_CHANNEL_LAYOUT = "stereo"
#: Video codecs FFmpeg's MP4 muxer stores and common players decode, so they are stream-copied.
MP4_COPY_CODECS = frozenset({"h264", "hevc", "av1", "mpeg4", "vp9"})
#: Ducking of the original track in ``mix`` mode: a conventional voice-over setting (gain reduction
#: starts when the new audio exceeds ~-26 dBFS (0.05), ratio 8:1, 20 ms attack, 400 ms release).
#: Chosen by convention, not tuned on our media.
DUCK_FILTER = "sidechaincompress=threshold=0.05:ratio=8:attack=20:release=400"
#: Slack on time comparisons, seconds: container durations are printed to the microsecond and
#: timestamps are rational, so comparisons of "within one frame" get 1 ms of room.
TIME_SLACK_S = 1e-3


def seconds(value: float) -> str:
    """A time or gain value as FFmpeg text: fixed point, 6 decimals, trailing zeros dropped.

    Examples: ``seconds(3.0) == "3"``, ``seconds(5.28) == "5.28"``, ``seconds(-12.5) == "-12.5"``.
    """
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# --- measuring inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoPacket:
    """One video packet, in decode order, timed on FFmpeg's input timeline.

    Attributes:
        pts_s: Presentation time, seconds, relative to the file's start time (FFmpeg subtracts the
            file's ``start_time`` from every input timestamp, so this is what ``-t`` compares with).
        dts_s: Decode time, seconds, same origin (negative for the first packets of a B-frame stream).
        duration_s: How long the frame is shown, seconds.
    """

    pts_s: float
    dts_s: float
    duration_s: float


@dataclass(frozen=True)
class VideoTimeline:
    """The packets of a video stream in decode order, as ffprobe listed them (no decoding needed).

    Attributes:
        packets: Decode-order packets; one packet is one frame for the codecs we copy.
    """

    packets: tuple[VideoPacket, ...]

    @property
    def start_s(self) -> float:
        """Presentation time of the first frame shown, seconds."""
        return min(p.pts_s for p in self.packets)

    @property
    def duration_s(self) -> float:
        """Presentation length, seconds: end of the last frame shown minus the first frame's time."""
        return max(p.pts_s + p.duration_s for p in self.packets) - self.start_s


def video_packets_argv(path: str | Path) -> list[str]:
    """ffprobe argv listing the first video stream's packets (demux only, no decoding; fast).

    Prints ``compact`` lines: ``packet|pts=..|dts=..|duration=..|flags=..``, the stream's
    ``time_base`` and the format's ``start_time``; parse them with :func:`parse_video_packets`.
    """
    return [
        ffmpeg.FFPROBE, "-v", "error", "-select_streams", "v:0",
        "-show_entries", "packet=pts,dts,duration,flags:stream=time_base:format=start_time",
        "-of", "compact", str(path),
    ]


def _sections(text: str) -> list[tuple[str, dict[str, str]]]:
    rows = []
    for line in text.splitlines():
        name, _, rest = line.strip().partition("|")
        if not name or not rest:
            continue
        fields = dict(item.partition("=")[::2] for item in rest.split("|"))
        rows.append((name, fields))
    return rows


def parse_video_packets(text: str, *, fallback_frame_s: float) -> VideoTimeline | None:
    """Read :func:`video_packets_argv` output into a :class:`VideoTimeline`.

    Args:
        text: ffprobe's stdout.
        fallback_frame_s: Frame duration (seconds) used for packets whose duration is not stored
            (some MPEG-TS files), normally 1 / the stream's average frame rate.

    Returns:
        The timeline, or None when it cannot be trusted for a stream-copy cut: no packets, a packet
        without pts or dts, or packets flagged ``D`` (discarded by an edit list; a copy would carry
        them along). None makes the planner re-encode rather than guess.
    """
    rows = _sections(text)
    stream = next((f for name, f in rows if name == "stream"), {})
    fmt = next((f for name, f in rows if name == "format"), {})
    try:
        num, den = (int(x) for x in stream.get("time_base", "").split("/"))
        time_base = Fraction(num, den)
    except ValueError:
        return None
    try:
        origin = Fraction(fmt.get("start_time", "0"))
    except ValueError:  # "N/A": raw streams without a start time start at 0
        origin = Fraction(0)
    packets = []
    for name, fields in rows:
        if name != "packet":
            continue
        if "D" in fields.get("flags", ""):
            return None
        try:
            pts, dts = int(fields["pts"]), int(fields["dts"])
        except (KeyError, ValueError):
            return None
        try:
            duration = int(fields.get("duration", "")) * time_base
        except ValueError:
            duration = Fraction(0)
        duration_s = float(duration) if duration > 0 else fallback_frame_s
        packets.append(VideoPacket(float(pts * time_base - origin), float(dts * time_base - origin), duration_s))
    return VideoTimeline(tuple(packets)) if packets else None


def frame_duration_s(avg_frame_rate: str | None, r_frame_rate: str | None, *, default_fps: float = 25.0) -> float:
    """One frame's duration, seconds, from ffprobe's ``avg_frame_rate`` ("25/1"), else ``r_frame_rate``.

    ``default_fps`` (25, the PAL rate of our sample media) is used only when neither is a positive
    rational, e.g. "0/0".
    """
    for rate in (avg_frame_rate, r_frame_rate):
        try:
            num, den = (int(x) for x in (rate or "").split("/"))
        except ValueError:
            continue
        if num > 0 and den > 0:
            return den / num
    return 1.0 / default_fps


def audio_frames_argv(path: str | Path) -> list[str]:
    """ffprobe argv that *decodes* the first audio stream and prints each frame's sample count.

    Decoding is the only exact measure: an MP3's header duration includes the encoder delay and
    padding that the decoder trims (narration_ptbr.mp3: header 10.553 s, decoded 10.513 s). Output:
    one integer per line; read it with :func:`parse_decoded_duration`.
    """
    return [
        ffmpeg.FFPROBE, "-v", "error", "-select_streams", "a:0",
        "-show_entries", "frame=nb_samples", "-of", "csv=p=0", str(path),
    ]


def parse_decoded_duration(text: str, *, sample_rate_hz: int) -> float:
    """Decoded audio length in seconds: the sum of :func:`audio_frames_argv`'s sample counts / rate.

    Assumes the rate does not change mid-stream (FFmpeg would resample such a stream anyway).
    """
    samples = sum(int(line) for line in text.split() if line.strip().isdigit())
    return samples / sample_rate_hz


# --- planning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyCut:
    """A point where a stream-copied video can end without a gap.

    Attributes:
        frames: Packets kept, a decode-order prefix; equals the number of frames shown.
        end_s: Presentation length of the kept frames, seconds (from the first frame shown).
        input_t_s: Value for FFmpeg's *input* ``-t`` that keeps exactly this prefix: FFmpeg stops a
            copied stream at the first packet whose dts >= ``-t``, so this is the midpoint between
            the last kept packet's dts and the first dropped one's.
    """

    frames: int
    end_s: float
    input_t_s: float


def copy_cut_points(timeline: VideoTimeline) -> list[CopyCut]:
    """Every decode-order prefix of ``timeline`` that shows a gap-free run of frames from the start.

    A prefix is usable when its frames are exactly the ``k`` earliest in presentation order. Without
    B-frames that is every prefix; with them it is only the prefixes that end a mini-GOP (bikes: I P
    B b B ... has usable cuts every ~4 frames). The full stream is not included (no cut needed), nor
    prefixes whose ``-t`` would not be positive.

    Returns:
        Cut points in increasing length.
    """
    packets = timeline.packets
    by_presentation = sorted(p.pts_s for p in packets)
    start = by_presentation[0]
    cuts = []
    latest = -math.inf
    for k in range(1, len(packets)):
        last = packets[k - 1]
        latest = max(latest, last.pts_s)
        if latest != by_presentation[k - 1]:
            continue  # a later-shown frame was decoded before an earlier one that is not kept
        input_t = (last.dts_s + packets[k].dts_s) / 2
        if input_t <= 0:
            continue
        end = max(p.pts_s + p.duration_s for p in packets[:k]) - start
        cuts.append(CopyCut(frames=k, end_s=end, input_t_s=input_t))
    return cuts


@dataclass(frozen=True)
class AddAudioPlan:
    """What the add-audio render will do and what its output must measure.

    Attributes:
        target_s: Length the length policy asks for, seconds (e.g. the shorter input's length).
        output_s: Length of the output's video, and so of its audio, seconds; within one frame of
            ``target_s``.
        frame_s: One video frame's duration, seconds (the "within one frame" tolerance).
        video_copied: True when the video stream is copied, False when it is re-encoded.
        frames: Video frames the output will have (a copy's kept packets, or the encoder's frames).
        copy_input_t_s: Input ``-t`` that cuts a copied video (None: keep every packet, or encode).
        hold_s: Seconds the last video frame is held (re-encode only; 0 if none).
        mix_original: Whether the video's own audio track is mixed in.
        reason: One line saying why the video is copied or re-encoded (for logs).
    """

    target_s: float
    output_s: float
    frame_s: float
    video_copied: bool
    frames: int
    copy_input_t_s: float | None
    hold_s: float
    mix_original: bool
    reason: str


def plan_addaudio(
    *,
    video_codec: str | None,
    timeline: VideoTimeline | None,
    video_duration_s: float,
    frame_s: float,
    audio_duration_s: float,
    video_has_audio: bool,
    options: AddAudioOptions,
) -> AddAudioPlan:
    """Decide output length and video handling for one add-audio render.

    Args:
        video_codec: ffprobe ``codec_name`` of the video stream, e.g. ``"h264"``.
        timeline: The video's packets (:func:`parse_video_packets`), or None if unknown; without it
            the video is re-encoded.
        video_duration_s: Video length, seconds; used only when ``timeline`` is None (it is the
            timeline's presentation length otherwise).
        frame_s: One frame's duration, seconds (:func:`frame_duration_s`).
        audio_duration_s: Decoded length of the new audio, seconds (:func:`parse_decoded_duration`).
        video_has_audio: Whether the video file has an audio stream (needed for ``mix``).
        options: The request's options.

    Returns:
        The plan. A copy is chosen when the codec is in :data:`MP4_COPY_CODECS` and the full stream
        or a :func:`copy_cut_points` cut ends within ``frame_s`` of the target; the nearest such end
        wins (ties: the shorter).

    Raises:
        InputError: the video (field ``url_video``) or audio (``url_audio``) has no duration, or the
            fades (``options.fade_out_s``) are longer together than the output.
    """
    video_s = timeline.duration_s if timeline is not None else video_duration_s
    if not video_s > 0:
        raise InputError("the video stream has no frames / no duration", field="url_video")
    if not audio_duration_s > 0:
        raise InputError("the audio stream decodes to no samples", field="url_audio")
    target_s = {
        "shortest": min(video_s, audio_duration_s),
        "video": video_s,
        "audio": audio_duration_s,
    }[options.length_policy]
    tolerance_s = frame_s + TIME_SLACK_S
    mix_original = options.mode == "mix" and video_has_audio

    copy: tuple[int, float, float | None] | None = None  # (frames, end_s, input -t)
    if video_codec not in MP4_COPY_CODECS:
        reason = f"video codec {video_codec!r} is not stored in MP4 as-is; re-encoding"
    elif timeline is None:
        reason = "video packet timing unknown (no pts/dts, or edit-list discards); re-encoding"
    else:
        options_copy = [(len(timeline.packets), video_s, None)]
        options_copy += [(c.frames, c.end_s, c.input_t_s) for c in copy_cut_points(timeline)]
        near = [o for o in options_copy if abs(o[1] - target_s) <= tolerance_s]
        if near:
            copy = min(near, key=lambda o: (abs(o[1] - target_s), o[1]))
            reason = "video stream copied" + ("" if copy[2] is None else f", cut after {copy[0]} packets")
        elif target_s > video_s:
            reason = "holding the last frame (tpad) needs re-encoding"
        else:
            reason = "no packet boundary within one frame of the target length (B-frames); re-encoding"

    if copy is not None:
        frames, output_s, input_t_s = copy
        hold_s = 0.0
    else:
        frames = max(1, round(target_s / frame_s))
        output_s = frames * frame_s
        input_t_s = None
        hold_s = max(0.0, output_s - video_s)
    if options.fade_in_s + options.fade_out_s > output_s + TIME_SLACK_S:
        raise InputError(
            f"fade_in_s + fade_out_s = {options.fade_in_s + options.fade_out_s:g} s is longer than the "
            f"{output_s:.3f} s output",
            field="options.fade_out_s",
        )
    return AddAudioPlan(target_s=target_s, output_s=output_s, frame_s=frame_s, video_copied=copy is not None,
                        frames=frames, copy_input_t_s=input_t_s, hold_s=hold_s, mix_original=mix_original,
                        reason=reason)


# --- filtergraph and argv -------------------------------------------------------------------------

_AFORMAT = f"aformat=sample_fmts=fltp:sample_rates={OUTPUT_SAMPLE_RATE_HZ}:channel_layouts={OUTPUT_CHANNEL_LAYOUT}"


def fit_chain(output_s: float) -> str:
    """Filters that make an audio stream exactly ``output_s`` seconds: pad with silence, then cut.

    ``apad=whole_dur`` only pads a shorter stream; ``atrim=duration`` cuts at the sample
    (48 kHz: 1/48000 s); ``asetpts`` restarts timestamps at 0 so later ``afade`` times are output times.
    """
    d = seconds(output_s)
    return f"apad=whole_dur={d},atrim=duration={d},asetpts=PTS-STARTPTS"


def fade_chain(output_s: float, *, fade_in_s: float, fade_out_s: float) -> list[str]:
    """``afade`` filters: fade-in from t=0, fade-out ending at ``output_s`` (seconds); [] for none."""
    chain = []
    if fade_in_s > 0:
        chain.append(f"afade=t=in:st=0:d={seconds(fade_in_s)}")
    if fade_out_s > 0:
        chain.append(f"afade=t=out:st={seconds(max(0.0, output_s - fade_out_s))}:d={seconds(fade_out_s)}")
    return chain


#: yuv420p needs even width and height: drop the last column/row of an odd-sized picture (the same
#: rule as the caption path) instead of failing in the encoder.
EVEN_CROP = "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0"


def video_encode_chain(plan: AddAudioPlan) -> str:
    """Video filters for the re-encode path: hold the last frame if needed, keep ``plan.frames`` frames.

    ``tpad=stop_mode=clone`` repeats the last frame for ``hold_s`` plus one frame of margin; ``trim``
    keeps frames starting before (frames - 0.5) x frame_s, i.e. exactly ``plan.frames`` at a constant
    rate. FFmpeg rotates the pictures upright before this chain (autorotate), so rotation is kept. An
    odd width or height is cropped to even (:data:`EVEN_CROP`).
    """
    chain = []
    if plan.hold_s > 0:
        chain.append(f"tpad=stop_mode=clone:stop_duration={seconds(plan.hold_s + plan.frame_s)}")
    chain.append(f"trim=duration={seconds((plan.frames - 0.5) * plan.frame_s)}")
    chain.append("setpts=PTS-STARTPTS")
    chain.append(EVEN_CROP)
    return ",".join(chain)


def addaudio_filtergraph(plan: AddAudioPlan, options: AddAudioOptions) -> str:
    """The ``-filter_complex`` graph. Inputs: 0 = video, 1 = new audio, 2 = video again (mix only).

    Outputs ``[aout]`` (AAC-ready fltp stereo 48 kHz, exactly ``plan.output_s`` long) and, when the
    video is re-encoded, ``[vout]``.
    """
    new = [_AFORMAT]
    if options.volume_db != 0:
        new.append(f"volume={seconds(options.volume_db)}dB")
    new.append(fit_chain(plan.output_s))
    fades = fade_chain(plan.output_s, fade_in_s=options.fade_in_s, fade_out_s=options.fade_out_s)
    graph = []
    if plan.mix_original:
        original = ["aresample=async=1:first_pts=0", _AFORMAT, f"volume={seconds(options.original_volume_db)}dB",
                    f"apad=whole_dur={seconds(plan.output_s)}", f"atrim=end={seconds(plan.output_s)}"]
        graph.append(f"[2:a:0]{','.join(original)}[orig]")
        if options.duck:
            graph.append(f"[1:a:0]{','.join(new)},asplit=2[new][key]")
            graph.append(f"[orig][key]{DUCK_FILTER}[bed]")
        else:
            graph.append(f"[1:a:0]{','.join(new)}[new]")
        mixed = ",".join(["amix=inputs=2:duration=longest:normalize=0", *fades])
        graph.append(f"[{'bed' if options.duck else 'orig'}][new]{mixed}[aout]")
    else:
        graph.append(f"[1:a:0]{','.join([*new, *fades])}[aout]")
    if not plan.video_copied:
        graph.insert(0, f"[0:v:0]{video_encode_chain(plan)}[vout]")
    return ";".join(graph)


def addaudio_argv(
    plan: AddAudioPlan,
    options: AddAudioOptions,
    *,
    video: str | Path,
    audio: str | Path,
    output: str | Path,
    encoder_args: list[str] | None,
) -> list[str]:
    """The one FFmpeg command of an add-audio render.

    Args:
        plan: From :func:`plan_addaudio`.
        options: The request's options (volumes, fades, audio bitrate).
        video, audio, output: Paths we chose (``video.bin``, ``audio.bin``, ``output.mp4``).
        encoder_args: ``ffmpeg.h264_encoder_args(...)`` when ``plan.video_copied`` is False; ignored
            (may be None) for a copy.

    Returns:
        argv writing an MP4 with ``+faststart``: the video copied (cut by an input ``-t`` if needed)
        or re-encoded, and AAC LC stereo 48 kHz audio at ``options.audio_bitrate_kbps``.

    Raises:
        ValueError: ``encoder_args`` missing for a re-encode.
    """
    if not plan.video_copied and not encoder_args:
        raise ValueError("encoder_args are required when the video is re-encoded")
    cut = ["-t", seconds(plan.copy_input_t_s)] if plan.copy_input_t_s is not None else []
    original = ["-i", str(video)] if plan.mix_original else []
    video_out = ["-map", "0:v:0", "-c:v", "copy"] if plan.video_copied else ["-map", "[vout]", *encoder_args]
    return [
        ffmpeg.FFMPEG, *ffmpeg.BASE_ARGS,
        *cut, "-i", str(video),
        "-i", str(audio),
        *original,
        "-filter_complex", addaudio_filtergraph(plan, options),
        *video_out,
        "-map", "[aout]",
        "-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{options.audio_bitrate_kbps}k",
        "-ar", str(OUTPUT_SAMPLE_RATE_HZ), "-ac", "2",
        "-movflags", "+faststart",
        "-f", "mp4", "-y", str(output),
    ]

