"""render_addaudio on real media, checked with ffprobe and by decoding the output audio.

Media: ../shared/media (bbb 5.28 s video with 5.312 s 5.1 audio; bikes 10 s with B-frames and no
audio; narration 10.51 s MP3 and mono 48 kHz WAV). Shorter or re-coded variants are generated in
tmp folders with ffmpeg, kept to a few seconds (the CI box has 2 cores).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from worker_image import ffmpeg
from worker_image.addaudio import render_addaudio
from worker_image.contract import AddAudioJob, AddAudioResult
from worker_image.errors import DownloadError, InputError
from worker_image.probe import is_faststart

FPS = 25
FRAME_S = 1 / FPS
AV_TOLERANCE_S = 0.05
FAST = {"x264_preset": "superfast"}  # re-encodes in tests only need to be correct, not small


def sh(*argv: str) -> str:
    return subprocess.run([ffmpeg.FFMPEG if argv[0] == "ffmpeg" else argv[0], *argv[1:]], check=True,
                          capture_output=True, text=True).stdout


def make(dest: Path, *args: str) -> Path:
    """Generate a test input with ffmpeg."""
    sh("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *args, "-y", str(dest))
    return dest


def streams(path: Path) -> dict:
    data = json.loads(sh(ffmpeg.FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)))
    by_type = {s["codec_type"]: s for s in data["streams"]}
    return {"format": data["format"], **by_type}


def video_packets(path: Path) -> list[str]:
    """Per-packet dts, pts, duration, size and MD5 of the first video stream's data (no decoding)."""
    text = sh("ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def pcm(path: Path) -> np.ndarray:
    """The first audio stream decoded to float stereo 48 kHz, shape (samples, 2)."""
    raw = subprocess.run([ffmpeg.FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "2", "-ar", "48000",
                          "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.float32).reshape(-1, 2)


def rms_db(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) + 1e-12))


def window(samples: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return samples[int(start_s * 48000):int(end_s * 48000)]


@pytest.fixture(scope="module")
def media(media_dir: Path) -> dict[str, Path]:
    return {
        "bbb": media_dir / "videos" / "bigbuckbunny_720p25_5ch.mp4",
        "bikes": media_dir / "videos" / "bikes_640x272_noaudio.mp4",
        "mp3": media_dir / "audio" / "narration_ptbr.mp3",
        "wav": media_dir / "audio" / "narration_ptbr_mono48k.wav",
        "jpg": media_dir / "photos" / "rocket_640x427.jpg",
    }


@pytest.fixture(scope="module")
def generated(media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("addaudio-inputs")
    mp3 = str(media["mp3"])
    return {
        "cut3": make(d / "narration_3s.wav", "-i", mp3, "-t", "3", "-ar", "48000"),
        "cut2_9": make(d / "narration_2.9s.wav", "-i", mp3, "-t", "2.9", "-ar", "48000"),
        "m4a": make(d / "narration.m4a", "-i", mp3, "-c:a", "aac", "-b:a", "96k"),
        "opus": make(d / "narration.opus", "-i", mp3, "-c:a", "libopus", "-b:a", "48k"),
        "silence": make(d / "silence.wav", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "6"),
        # A 440 Hz tone peaking at -7 dBFS (lavfi's sine is 1/8 = -18 dBFS, +11 dB), 6 s: a steady,
        # speech-like level to measure gains and fades against, well above the ducking threshold.
        "tone": make(d / "tone.wav", "-f", "lavfi", "-i", "sine=f=440:r=48000:d=6", "-af", "volume=11dB"),
        # The same tone, silent for the first 2.5 s: keys the ducking only in the second half.
        "late_tone": make(d / "late_tone.wav", "-f", "lavfi", "-i", "sine=f=440:r=48000:d=6",
                          "-af", "volume=11dB,volume=enable='lt(t,2.5)':volume=0"),
        # A 2 s phone-style clip: 320x240 pixels stored, displayed rotated by 90 degrees (FFmpeg 5.1 takes
        # the rotate tag only when stream-copying, hence two steps).
        "rotated": make(d / "rotated.mp4", "-i", str(make(d / "upright.mp4", "-f", "lavfi", "-i",
                        "testsrc=s=320x240:r=25:d=2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")),
                        "-c", "copy", "-metadata:s:v", "rotate=90"),
    }


def render(tmp_path: Path, video: Path, audio: Path, **options) -> tuple[AddAudioResult, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out" / "video_com_audio.mp4"
    job = AddAudioJob(url_video=str(video), url_audio=str(audio), filename="video_com_audio.mp4",
                      output={"kind": "file", "path": str(out)}, options=options)
    return render_addaudio(job, allow_local_inputs=True, workdir=tmp_path), out


def assert_av(out: Path, *, expected_s: float) -> dict:
    """Output length within one frame of ``expected_s``, A/V within 0.05 s, AAC LC stereo 48 kHz, faststart."""
    info = streams(out)
    duration = float(info["format"]["duration"])
    v, a = float(info["video"]["duration"]), float(info["audio"]["duration"])
    assert abs(duration - expected_s) <= FRAME_S + 1e-3, (duration, expected_s)
    assert abs(v - a) <= AV_TOLERANCE_S, (v, a)
    assert (info["audio"]["codec_name"], info["audio"]["profile"]) == ("aac", "LC")
    assert (info["audio"]["channels"], info["audio"]["sample_rate"]) == (2, "48000")
    assert is_faststart(out)
    return info


# --- the seed's behaviour: replace, shortest, copy ---------------------------------------------------


def test_audio_longer_than_video_copies_every_video_packet(tmp_path, media):
    result, out = render(tmp_path, media["bbb"], media["mp3"])
    assert_av(out, expected_s=5.28)  # the video is the shorter input
    assert result.video_copied and result.encoder == "copy"
    assert video_packets(out) == video_packets(media["bbb"])  # all 132 packets, byte for byte
    assert result.duration_s == pytest.approx(5.28, abs=1e-3)
    assert abs(result.video_duration_s - result.audio_duration_s) <= 1e-3  # measured: 5.280 / 5.280


def test_video_longer_than_audio_cuts_the_copied_video_at_a_packet(tmp_path, media, generated):
    result, out = render(tmp_path, media["bikes"], generated["cut3"])
    assert_av(out, expected_s=3.0)
    assert result.video_copied
    kept = video_packets(out)
    assert len(kept) == 75 and kept == video_packets(media["bikes"])[:75]  # B-frame stream, no frame missing
    assert result.video_duration_s == pytest.approx(3.0, abs=1e-3)
    assert result.audio_duration_s == pytest.approx(3.0, abs=1e-3)


def test_no_packet_boundary_within_a_frame_reencodes(tmp_path, media, generated):
    # bikes can be copy-cut at 2.84 s or 3.00 s (mini-GOP ends); 2.9 s audio is more than a frame from both.
    result, out = render(tmp_path, media["bikes"], generated["cut2_9"], **FAST)
    info = assert_av(out, expected_s=2.9)
    assert not result.video_copied and result.encoder in ("libx264", "h264_nvenc")
    assert (info["video"]["width"], info["video"]["height"]) == (640, 272)


@pytest.mark.parametrize("kind", ["mp3", "wav", "m4a", "opus"])
def test_audio_formats(tmp_path, media, generated, kind):
    audio = media[kind] if kind in media else generated[kind]
    result, out = render(tmp_path, media["bbb"], audio)
    assert_av(out, expected_s=5.28)
    assert result.video_copied
    speech = pcm(out)
    assert rms_db(speech) > -40  # the narration is there, not silence


def test_51_audio_is_downmixed_to_stereo(tmp_path, media):
    # bbb's 5.1 track (5.312 s) as the new audio of bikes (10 s): shortest = 5.312 s.
    result, out = render(tmp_path, media["bikes"], media["bbb"], **FAST)
    assert_av(out, expected_s=5.312)
    left, right = pcm(out).T
    assert rms_db(left) > -40 and rms_db(right) > -40
    assert result.video_copied  # bikes has a packet boundary at 5.32 s, within a frame of 5.312 s


def test_rotation_is_kept_on_copy_and_applied_on_reencode(tmp_path, generated):
    copied, out = render(tmp_path, generated["rotated"], generated["cut3"])  # 2 s video: copy
    info = streams(out)
    assert copied.video_copied
    rotation = [sd.get("rotation") for sd in info["video"].get("side_data_list", [])]
    assert rotation == [sd.get("rotation") for sd in streams(generated["rotated"])["video"]["side_data_list"]]
    assert rotation in ([90], [-90])
    held, out2 = render(tmp_path / "held", generated["rotated"], generated["cut3"], length_policy="audio", **FAST)
    info2 = assert_av(out2, expected_s=3.0)
    assert not held.video_copied
    assert (info2["video"]["width"], info2["video"]["height"]) == (240, 320)  # upright, no rotation tag
    assert not info2["video"].get("side_data_list")


# --- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("not_audio", ["bikes", "jpg"])
def test_audio_input_without_an_audio_stream_is_an_input_error(tmp_path, media, not_audio):
    with pytest.raises(InputError) as info:
        render(tmp_path, media["bbb"], media[not_audio])
    err = info.value
    assert err.field == "url_audio" and err.item_id == "video_com_audio.mp4" and not err.retryable
    assert "no audio stream" in err.message and "video" in err.message
    assert not (tmp_path / "out").exists()


def test_video_input_without_a_video_stream_is_an_input_error(tmp_path, media):
    with pytest.raises(InputError) as info:
        render(tmp_path, media["mp3"], media["mp3"])
    assert info.value.field == "url_video" and "no video stream" in info.value.message


def test_not_media_is_an_input_error_naming_the_field(tmp_path, media):
    junk = tmp_path / "notes.txt"
    junk.write_text("not audio")
    with pytest.raises(InputError) as info:
        render(tmp_path, media["bbb"], junk)
    assert info.value.field == "url_audio" and "not a readable media file" in info.value.message


def test_dead_audio_link_is_a_download_error(tmp_path, media, origin):
    video_url = origin.add("/v.mp4", media["bikes"].read_bytes())
    job = AddAudioJob(url_video=video_url, url_audio=origin.base_url + "/missing.mp3", filename="x.mp4",
                      output={"kind": "file", "path": str(tmp_path / "x.mp4")})
    with pytest.raises(DownloadError) as info:
        render_addaudio(job, workdir=tmp_path)
    assert info.value.field == "url_audio" and not info.value.retryable and "404" in info.value.message


# --- options ------------------------------------------------------------------------------------


def test_video_policy_pads_audio_with_silence(tmp_path, media, generated):
    result, out = render(tmp_path, media["bikes"], generated["cut3"], length_policy="video")
    assert_av(out, expected_s=10.0)
    assert result.video_copied and video_packets(out) == video_packets(media["bikes"])
    sound = pcm(out)
    assert rms_db(window(sound, 0.5, 2.8)) > -40
    assert rms_db(window(sound, 3.1, 10.0)) < -80  # apad: digital silence after the 3 s narration


def test_audio_policy_holds_the_last_frame(tmp_path, media):
    result, out = render(tmp_path, media["bikes"], media["wav"], length_policy="audio", **FAST)
    info = assert_av(out, expected_s=10.513)  # the WAV decodes to 504643 samples at 48 kHz
    assert not result.video_copied
    assert int(info["video"]["nb_frames"]) == 263  # round(10.513 x 25); frames 250..262 repeat frame 249
    # The last 0.6 s (frames 248..262), small and grey. Source motion moves ~4 levels per pixel per frame;
    # the held frames differ only by coding noise (measured: <= 0.2, and 0.8 for the first clone).
    raw = subprocess.run([ffmpeg.FFMPEG, "-v", "error", "-sseof", "-0.6", "-i", str(out), "-map", "0:v:0",
                          "-vf", "scale=160:68", "-pix_fmt", "gray", "-f", "rawvideo", "-"],
                         check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 68, 160).astype(np.int16)
    steps = [float(np.abs(b - a).mean()) for a, b in zip(frames[:-1], frames[1:])]
    assert len(frames) == 15 and steps[0] > 2.0  # 248 -> 249: the video still moves
    assert max(steps[2:]) < 0.5  # 250 -> 262: one picture held


def test_audio_policy_shorter_audio_cuts_like_shortest(tmp_path, media, generated):
    result, out = render(tmp_path, media["bikes"], generated["cut3"], length_policy="audio")
    assert_av(out, expected_s=3.0)
    assert result.video_copied


def test_mix_keeps_the_original_track_at_the_given_gain(tmp_path, media, generated):
    # New audio = silence, so the output is the original track alone at original_volume_db.
    _, out = render(tmp_path, media["bbb"], generated["silence"], mode="mix", original_volume_db=-6)
    assert_av(out, expected_s=5.28)
    reference = pcm(media["bbb"])  # the same 5.1 -> stereo downmix
    got = rms_db(window(pcm(out), 0.1, 5.2)) - rms_db(window(reference, 0.1, 5.2))
    assert got == pytest.approx(-6.0, abs=0.5)  # measured: -6.02 dB


def test_mix_on_a_video_without_audio_is_just_the_new_audio(tmp_path, media, generated):
    _, mixed = render(tmp_path / "mix", media["bikes"], generated["tone"], mode="mix", original_volume_db=-3)
    _, replaced = render(tmp_path / "replace", media["bikes"], generated["tone"])
    assert rms_db(window(pcm(mixed), 0.5, 5.5)) == pytest.approx(rms_db(window(pcm(replaced), 0.5, 5.5)), abs=0.1)


def _without_tone(samples: np.ndarray) -> np.ndarray:
    """Remove the 440 Hz test tone (zero 400-480 Hz) so what is left is the original track."""
    spectrum = np.fft.rfft(samples.mean(axis=1))
    freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
    spectrum[(freqs > 400) & (freqs < 480)] = 0
    return np.fft.irfft(spectrum, len(samples))


def test_ducking_lowers_the_original_only_while_the_new_audio_plays(tmp_path, media, generated):
    _, plain = render(tmp_path / "plain", media["bbb"], generated["late_tone"], mode="mix")
    _, ducked = render(tmp_path / "ducked", media["bbb"], generated["late_tone"], mode="mix", duck=True)
    plain_pcm, ducked_pcm = pcm(plain), pcm(ducked)
    quiet_part = [rms_db(_without_tone(window(x, 0.2, 2.3))) for x in (plain_pcm, ducked_pcm)]
    loud_part = [rms_db(_without_tone(window(x, 3.0, 5.2))) for x in (plain_pcm, ducked_pcm)]
    assert abs(quiet_part[0] - quiet_part[1]) < 1.5  # no key: no gain reduction
    assert loud_part[0] - loud_part[1] > 6  # tone keys the compressor (measured: 13.4 dB lower)


def test_volume_and_fades(tmp_path, media, generated):
    _, flat = render(tmp_path / "flat", media["bbb"], generated["tone"])
    _, shaped = render(tmp_path / "shaped", media["bbb"], generated["tone"], volume_db=-6, fade_in_s=1, fade_out_s=1)
    assert_av(shaped, expected_s=5.28)
    flat_pcm, shaped_pcm = pcm(flat), pcm(shaped)
    steady = rms_db(window(flat_pcm, 1.5, 3.5))
    assert rms_db(window(shaped_pcm, 1.5, 3.5)) - steady == pytest.approx(-6.0, abs=0.3)
    assert rms_db(window(flat_pcm, 0.0, 0.03)) - steady > -3  # no fade: full level from the start
    assert rms_db(window(shaped_pcm, 0.0, 0.03)) - steady < -35  # fade-in: near silence at t = 0
    assert rms_db(window(shaped_pcm, 5.25, 5.28)) - steady < -35  # fade-out ends at the output's end
    assert rms_db(window(shaped_pcm, 4.0, 4.2)) - steady == pytest.approx(-6.0, abs=0.3)  # before the fade-out
    # Half-way through the (linear) fade-out, 4.78 s, the gain is 1/2: another -6 dB.
    assert rms_db(window(shaped_pcm, 4.77, 4.79)) - steady == pytest.approx(-12.0, abs=1.0)
