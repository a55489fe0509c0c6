"""Add-audio planning and golden argv (pure functions; nothing is run)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker_image import audio, ffmpeg
from worker_image.audio import VideoPacket, VideoTimeline
from worker_image.contract import AddAudioJob, AddAudioOptions
from worker_image.errors import InputError

FRAME_S = 0.04  # 25 fps, like the sample media

#: bikes_640x272_noaudio.mp4's first 9 packets as ffprobe prints them (time base 1/12800, 512 ticks
#: per frame): I P B b B P B b B, dts starting two frames early.
BIKES_HEAD = "\n".join(
    [
        "packet|pts=0|dts=-1024|duration=512|flags=K_",
        "packet|pts=2048|dts=-512|duration=512|flags=__",
        "packet|pts=1024|dts=0|duration=512|flags=__",
        "packet|pts=512|dts=512|duration=512|flags=__",
        "packet|pts=1536|dts=1024|duration=512|flags=__",
        "packet|pts=4096|dts=1536|duration=512|flags=__",
        "packet|pts=3072|dts=2048|duration=512|flags=__",
        "packet|pts=2560|dts=2560|duration=512|flags=__",
        "packet|pts=3584|dts=3072|duration=512|flags=__",
        "stream|time_base=1/12800",
        "format|start_time=0.000000",
    ]
)


def intra_only(frames: int, frame_s: float = FRAME_S) -> VideoTimeline:
    """A timeline without B-frames: pts == dts, every prefix is a valid cut."""
    return VideoTimeline(tuple(VideoPacket(i * frame_s, i * frame_s, frame_s) for i in range(frames)))


def plan(**overrides):
    args = dict(video_codec="h264", timeline=intra_only(132), video_duration_s=5.28, frame_s=FRAME_S,
                audio_duration_s=10.513, video_has_audio=True, options=AddAudioOptions())
    args.update(overrides)
    return audio.plan_addaudio(**args)


# --- formatting and parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [(3.0, "3"), (5.28, "5.28"), (-12.0, "-12"), (0.0, "0"),
                                             (-0.0000001, "0"), (2.9, "2.9"), (1 / 3, "0.333333")])
def test_seconds_formatting(value, text):
    assert audio.seconds(value) == text


def test_parse_video_packets_keeps_decode_order_and_rational_times():
    timeline = audio.parse_video_packets(BIKES_HEAD, fallback_frame_s=FRAME_S)
    assert timeline is not None
    assert [p.pts_s for p in timeline.packets[:3]] == [0.0, 0.16, 0.08]
    assert [p.dts_s for p in timeline.packets[:3]] == [-0.08, -0.04, 0.0]
    assert timeline.start_s == 0.0
    assert timeline.duration_s == pytest.approx(0.36)  # 9 frames shown, pts 0 .. 0.32


def test_parse_video_packets_measures_from_the_file_start_time():
    text = "packet|pts=1100|dts=1100|duration=100|flags=K_\nstream|time_base=1/1000\nformat|start_time=1.000000"
    timeline = audio.parse_video_packets(text, fallback_frame_s=FRAME_S)
    assert timeline.packets == (VideoPacket(0.1, 0.1, 0.1),)


@pytest.mark.parametrize(
    "bad",
    [
        "packet|pts=N/A|dts=0|duration=512|flags=K_\nstream|time_base=1/12800",  # no pts: cannot plan a cut
        "packet|pts=0|dts=0|duration=512|flags=KD\nstream|time_base=1/12800",  # edit-list discard
        "stream|time_base=1/12800",  # no packets
        "packet|pts=0|dts=0|duration=512|flags=K_",  # no time base
    ],
)
def test_untrustworthy_packet_lists_give_no_timeline(bad):
    assert audio.parse_video_packets(bad, fallback_frame_s=FRAME_S) is None


def test_missing_packet_duration_uses_the_frame_rate():
    text = "packet|pts=0|dts=0|duration=N/A|flags=K_\nstream|time_base=1/90000\nformat|start_time=N/A"
    assert audio.parse_video_packets(text, fallback_frame_s=0.04).packets[0].duration_s == 0.04


@pytest.mark.parametrize(
    ("avg", "r", "expected"),
    [("25/1", "25/1", 0.04), ("30000/1001", "30/1", 1001 / 30000), ("0/0", "24/1", 1 / 24), ("0/0", None, 0.04)],
)
def test_frame_duration(avg, r, expected):
    assert audio.frame_duration_s(avg, r) == pytest.approx(expected)


def test_decoded_duration_sums_samples():
    # narration_ptbr.mp3 decodes to 402 full MP3 frames plus a trimmed first (47) and last (489) one.
    text = "47\n" + "1152\n" * 402 + "489\n"
    assert audio.parse_decoded_duration(text, sample_rate_hz=44100) == pytest.approx(463640 / 44100)


# --- copy cut points --------------------------------------------------------------------------------


def test_every_prefix_is_a_cut_without_b_frames():
    cuts = audio.copy_cut_points(intra_only(5))
    assert [(c.frames, round(c.end_s, 6), round(c.input_t_s, 6)) for c in cuts] == [
        (1, 0.04, 0.02), (2, 0.08, 0.06), (3, 0.12, 0.1), (4, 0.16, 0.14)]


def test_b_frame_cuts_only_where_no_frame_is_missing():
    timeline = audio.parse_video_packets(BIKES_HEAD, fallback_frame_s=FRAME_S)
    cuts = audio.copy_cut_points(timeline)
    # Prefix 1 (I) has a non-positive -t (dts -0.08 / -0.04); prefix 5 (I P B b B) shows frames 0-4
    # and is cut between dts 0.08 and 0.12; prefix 2 (I P) would show frames 0 and 4 with a hole.
    assert [(c.frames, round(c.end_s, 6), round(c.input_t_s, 6)) for c in cuts] == [(5, 0.2, 0.1)]


# --- planning -------------------------------------------------------------------------------------


def test_default_plan_copies_the_whole_video_when_audio_is_longer():
    p = plan()
    assert (p.target_s, p.output_s, p.video_copied, p.frames, p.copy_input_t_s) == (5.28, pytest.approx(5.28), True, 132, None)
    assert not p.mix_original and p.hold_s == 0


def test_shortest_cuts_a_copied_video_at_the_nearest_packet_boundary():
    p = plan(timeline=intra_only(250), video_duration_s=10.0, audio_duration_s=3.01)
    assert p.video_copied and p.frames == 75  # 3.00 s is 0.01 s from 3.01; 3.04 s is 0.03 s away
    assert p.output_s == pytest.approx(3.0)
    assert p.copy_input_t_s == pytest.approx(2.98)  # between dts 2.96 (kept) and 3.00 (dropped)


def test_no_cut_within_one_frame_reencodes():
    timeline = audio.parse_video_packets(BIKES_HEAD, fallback_frame_s=FRAME_S)  # cuts at 0.2 s and the end 0.36 s
    p = plan(timeline=timeline, audio_duration_s=0.3)
    assert not p.video_copied and "B-frames" in p.reason
    assert p.frames == 8 and p.output_s == pytest.approx(0.32) and p.hold_s == 0


def test_within_one_frame_of_the_end_keeps_every_packet():
    p = plan(options=AddAudioOptions(length_policy="audio"), audio_duration_s=5.312)  # bbb's own audio length
    assert p.video_copied and p.copy_input_t_s is None and p.output_s == pytest.approx(5.28)


def test_audio_policy_longer_than_video_holds_the_last_frame():
    p = plan(options=AddAudioOptions(length_policy="audio"))
    assert not p.video_copied and "tpad" in p.reason
    assert p.frames == 263 and p.output_s == pytest.approx(10.52) and p.hold_s == pytest.approx(5.24)


def test_video_policy_keeps_the_video_length():
    p = plan(timeline=intra_only(250), video_duration_s=10.0, audio_duration_s=3.0,
             options=AddAudioOptions(length_policy="video"))
    assert p.video_copied and p.output_s == pytest.approx(10.0) and p.target_s == pytest.approx(10.0)


@pytest.mark.parametrize("codec", ["vp8", "mjpeg", "prores", None])
def test_codecs_mp4_cannot_hold_are_reencoded(codec):
    p = plan(video_codec=codec)
    assert not p.video_copied and p.frames == 132


def test_unknown_timeline_reencodes_with_the_probed_duration():
    p = plan(timeline=None, video_duration_s=5.28)
    assert not p.video_copied and p.frames == 132


def test_mix_needs_an_original_track():
    assert plan(options=AddAudioOptions(mode="mix")).mix_original
    assert not plan(options=AddAudioOptions(mode="mix"), video_has_audio=False).mix_original


def test_fades_longer_than_the_output_are_refused():
    with pytest.raises(InputError) as info:
        plan(options=AddAudioOptions(fade_in_s=3, fade_out_s=3))
    assert info.value.field == "options.fade_out_s"


def test_empty_inputs_are_refused_with_their_field():
    with pytest.raises(InputError) as info:
        plan(audio_duration_s=0.0)
    assert info.value.field == "url_audio"
    with pytest.raises(InputError) as info:
        plan(timeline=None, video_duration_s=0.0)
    assert info.value.field == "url_video"


# --- golden argv ----------------------------------------------------------------------------------

AAC_OUT = ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", "192k", "-ar", "48000", "-ac", "2",
           "-movflags", "+faststart", "-f", "mp4", "-y", "output.mp4"]
AFORMAT = "aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo"


def test_argv_default_replace_copies_video():
    p = plan()
    argv = audio.addaudio_argv(p, AddAudioOptions(), video="video.bin", audio="audio.bin", output="output.mp4",
                               encoder_args=None)
    assert argv == [
        ffmpeg.FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-i", "video.bin", "-i", "audio.bin",
        "-filter_complex",
        f"[1:a:0]{AFORMAT},apad=whole_dur=5.28,atrim=duration=5.28,asetpts=PTS-STARTPTS[aout]",
        "-map", "0:v:0", "-c:v", "copy", "-map", "[aout]", *AAC_OUT,
    ]


def test_argv_copy_cut_puts_t_before_the_video_input_only():
    p = plan(timeline=intra_only(250), video_duration_s=10.0, audio_duration_s=3.0)
    options = AddAudioOptions(volume_db=-6, fade_in_s=0.5, fade_out_s=1)
    argv = audio.addaudio_argv(p, options, video="video.bin", audio="audio.bin", output="output.mp4", encoder_args=None)
    assert argv[5:11] == ["-t", "2.98", "-i", "video.bin", "-i", "audio.bin"]
    assert argv[argv.index("-filter_complex") + 1] == (
        f"[1:a:0]{AFORMAT},volume=-6dB,apad=whole_dur=3,atrim=duration=3,asetpts=PTS-STARTPTS,"
        "afade=t=in:st=0:d=0.5,afade=t=out:st=2:d=1[aout]"
    )


def test_argv_mix_with_ducking_reads_the_original_from_a_second_open():
    options = AddAudioOptions(mode="mix", original_volume_db=-9, duck=True, fade_out_s=0.5)
    p = plan(timeline=intra_only(250), video_duration_s=10.0, audio_duration_s=3.0, options=options)
    argv = audio.addaudio_argv(p, options, video="video.bin", audio="audio.bin", output="output.mp4", encoder_args=None)
    assert argv[5:13] == ["-t", "2.98", "-i", "video.bin", "-i", "audio.bin", "-i", "video.bin"]
    assert argv[argv.index("-filter_complex") + 1].split(";") == [
        f"[2:a:0]aresample=async=1:first_pts=0,{AFORMAT},volume=-9dB,apad=whole_dur=3,atrim=end=3[orig]",
        f"[1:a:0]{AFORMAT},apad=whole_dur=3,atrim=duration=3,asetpts=PTS-STARTPTS,asplit=2[new][key]",
        "[orig][key]sidechaincompress=threshold=0.05:ratio=8:attack=20:release=400[bed]",
        "[bed][new]amix=inputs=2:duration=longest:normalize=0,afade=t=out:st=2.5:d=0.5[aout]",
    ]


def test_argv_mix_without_ducking():
    p = plan(options=AddAudioOptions(mode="mix"))
    graph = audio.addaudio_filtergraph(p, AddAudioOptions(mode="mix"))
    assert graph.split(";")[1:] == [
        f"[1:a:0]{AFORMAT},apad=whole_dur=5.28,atrim=duration=5.28,asetpts=PTS-STARTPTS[new]",
        "[orig][new]amix=inputs=2:duration=longest:normalize=0[aout]",
    ]


def test_argv_hold_last_frame_reencodes_with_the_given_encoder():
    options = AddAudioOptions(length_policy="audio")
    p = plan(options=options)
    enc = ffmpeg.h264_encoder_args("libx264", crf=23, x264_preset="medium", cq=23, nvenc_preset="p4")
    argv = audio.addaudio_argv(p, options, video="video.bin", audio="audio.bin", output="output.mp4", encoder_args=enc)
    graph = argv[argv.index("-filter_complex") + 1].split(";")
    assert graph == [
        "[0:v:0]tpad=stop_mode=clone:stop_duration=5.28,trim=duration=10.5,setpts=PTS-STARTPTS,crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0[vout]",
        f"[1:a:0]{AFORMAT},apad=whole_dur=10.52,atrim=duration=10.52,asetpts=PTS-STARTPTS[aout]",
    ]
    start = argv.index("-filter_complex") + 2
    assert argv[start:start + 4 + len(enc)] == ["-map", "[vout]", *enc, "-map", "[aout]"]
    assert "-t" not in argv


def test_reencode_without_encoder_args_is_a_programming_error():
    with pytest.raises(ValueError):
        audio.addaudio_argv(plan(video_codec="vp8"), AddAudioOptions(), video="v", audio="a", output="o",
                            encoder_args=None)


def test_probe_argvs():
    assert audio.video_packets_argv("video.bin") == [
        ffmpeg.FFPROBE, "-v", "error", "-select_streams", "v:0",
        "-show_entries", "packet=pts,dts,duration,flags:stream=time_base:format=start_time",
        "-of", "compact", "video.bin"]
    assert audio.audio_frames_argv("audio.bin") == [
        ffmpeg.FFPROBE, "-v", "error", "-select_streams", "a:0",
        "-show_entries", "frame=nb_samples", "-of", "csv=p=0", "audio.bin"]


# --- contract -------------------------------------------------------------------------------------


def test_options_reject_mix_settings_in_replace_mode_and_unknown_keys():
    with pytest.raises(ValidationError, match="only with mode='mix'"):
        AddAudioOptions(duck=True)
    with pytest.raises(ValidationError, match="only with mode='mix'"):
        AddAudioOptions(original_volume_db=-6)
    with pytest.raises(ValidationError):
        AddAudioOptions(volume=3)  # misspelled volume_db
    with pytest.raises(ValidationError):
        AddAudioOptions(fade_in_s=-1)
    with pytest.raises(ValidationError):
        AddAudioOptions(x264_preset="ultrafast")  # signals Constrained Baseline, not the High we verify
    # A full dump (as a flow forwards it) validates again.
    assert AddAudioOptions.model_validate(AddAudioOptions().model_dump()) == AddAudioOptions()


def test_job_checks_url_schemes():
    job = dict(url_video="https://x.example/v.mp4", url_audio="https://x.example/a.mp3", filename="out.mp4",
               output={"kind": "file", "path": "/tmp/out.mp4"})
    assert AddAudioJob(**job).options == AddAudioOptions()
    with pytest.raises(ValidationError, match="url_audio"):
        AddAudioJob(**{**job, "url_audio": "ftp://x.example/a.mp3"})
