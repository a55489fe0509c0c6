"""Caption renders on real media: cues visible exactly in their time, audio copied, awkward inputs.

Every render uses libx264 "superfast" on clips of at most 5.3 s (most are 1-2 s at 320x180) to keep the
shared 2 cores free. Pixel checks decode single frames to 8-bit gray with FFmpeg and compare the
captioned output with the input in the caption band: inside a cue the text changes many pixels by a
lot, outside only encoding noise remains, which moves none by that much.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from worker_image import ffmpeg
from worker_image.caption import inspect_video, render_caption
from worker_image.contract import CaptionJob, CaptionResult
from worker_image.errors import InputError
from worker_image.probe import is_faststart, probe

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("fc-list") is None,
                                reason="ffmpeg and fontconfig are needed to render captions")

#: A pixel "changed" when its gray level moved by more than this (0-255). Encoding noise stays below it:
#: Big Buck Bunny 720p re-encoded by libx264 superfast moves no pixel by more than 22 outside cues; white
#: text with a black outline moves thousands of pixels by 100-230.
CHANGED_LEVELS = 64
#: Fractions of the caption band that changed. Measured on Big Buck Bunny 720p with the shared SRT:
#: 1.5-2.5 % inside cues, exactly 0 outside them; the thresholds sit far from both.
CUE_MIN = 0.003
NOISE_MAX = 0.0002


def _sh(argv: list[str]) -> bytes:
    return subprocess.run(argv, check=True, capture_output=True).stdout


def gray_frame(path: Path, t_s: float) -> np.ndarray:
    """The frame shown at ``t_s`` seconds, decoded upright (FFmpeg autorotates) to 8-bit gray, H x W."""
    info = probe(path).first("video")
    assert info is not None
    raw = _sh(["ffmpeg", "-hide_banner", "-loglevel", "error", "-ss", f"{t_s:.3f}", "-i", str(path),
               "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"])
    width, height = (info.height, info.width) if info.rotation_deg % 180 == 90 else (info.width, info.height)
    return np.frombuffer(raw, np.uint8)[: width * height].reshape(height, width)


def band_diff(a: np.ndarray, b: np.ndarray, band: tuple[float, float]) -> float:
    """Fraction of pixels whose gray level differs by more than CHANGED_LEVELS between two frames, within
    a horizontal band given as fractions of the height (``(0.75, 1.0)`` is the bottom quarter). Frames
    may differ by one row/column (odd-size crop)."""
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    rows = slice(int(band[0] * h), int(band[1] * h))
    diff = np.abs(a[rows, :w].astype(np.int16) - b[rows, :w].astype(np.int16))
    return float((diff > CHANGED_LEVELS).mean())


def make_clip(src: Path, dest: Path, *, seconds: float = 1.6, args: list[str] | None = None,
              vf: str = "scale=320:180", audio: bool = True) -> Path:
    """A short, small test input cut from a shared video (default: H.264 yuv420p, audio copied)."""
    codec = args if args is not None else ["-c:v", "libx264", "-preset", "superfast", "-pix_fmt", "yuv420p"]
    _sh(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-t", f"{seconds}", "-i", str(src), "-vf", vf,
         *codec, *(["-c:a", "copy"] if audio else ["-an"]), str(dest)])
    return dest


def write_srt(path: Path, cues: list[tuple[float, float, str]]) -> Path:
    def ts(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    path.write_text("".join(f"{i}\n{ts(a)} --> {ts(b)}\n{text}\n\n" for i, (a, b, text) in enumerate(cues, 1)),
                    encoding="utf-8")
    return path


def caption(video: Path, subs: Path, out: Path, **extra) -> CaptionResult:
    job = CaptionJob(id="cap-1", url_video=str(video), url_srt=str(subs), filename=out.name,
                     output={"kind": "file", "path": str(out)}, encoder="libx264", x264_preset="superfast", **extra)
    return render_caption(job, allow_local_inputs=True, workdir=out.parent)


# --- the command ---------------------------------------------------------------------------------------

def test_caption_argv_golden():
    argv = ffmpeg.caption_argv(input_name="input.video", subtitles_name="subs.ass", output_name="output.mp4",
                               encoder_args=ffmpeg.h264_encoder_args("libx264", crf=23, x264_preset="medium",
                                                                     cq=23, nvenc_preset="p4"))
    assert argv == [
        ffmpeg.FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-i", "input.video",
        "-map", "0:v:0", "-map", "0:a?",
        "-vf", "format=yuv420p,ass=filename=subs.ass:shaping=complex",
        "-fps_mode", "passthrough",
        "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-c:a", "copy",
        "-movflags", "+faststart", "-f", "mp4", "-y", "output.mp4",
    ]
    cropped = ffmpeg.caption_argv(input_name="i", subtitles_name="s.ass", output_name="o.mp4", encoder_args=[],
                                  crop_px=(320, 180))
    assert cropped[cropped.index("-vf") + 1] == "crop=320:180:0:0,format=yuv420p,ass=filename=s.ass:shaping=complex"


@pytest.mark.parametrize("name", ["../subs.ass", "/tmp/subs.ass", "a:b.ass", "it's.ass", "legendas ptbr.srt",
                                  "x,y.ass", "ação.srt"])
def test_caption_argv_refuses_anything_but_plain_names(name):
    with pytest.raises(ValueError):
        ffmpeg.caption_argv(input_name="input.video", subtitles_name=name, output_name="output.mp4", encoder_args=[])


# --- Big Buck Bunny with the shared Portuguese SRT -------------------------------------------------------

@pytest.fixture(scope="module")
def bbb(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CaptionResult]:
    """(input, output, result) of one caption render of the 5.28 s clip; the output path has a space,
    a colon, quotes and accents, which must not matter."""
    src = media_dir / "videos" / "bigbuckbunny_720p25_5ch.mp4"
    out_dir = tmp_path_factory.mktemp("bbb") / "saída: 'legendas' \"x\""
    out_dir.mkdir()
    job = CaptionJob(id="bbb", url_video=str(src), url_srt=str(media_dir / "subtitles" / "legendas_ptbr.srt"),
                     filename="bbb.mp4", output={"kind": "file", "path": str(out_dir / "bbb legendado.mp4")},
                     encoder="libx264", x264_preset="superfast")
    result = render_caption(job, allow_local_inputs=True)
    return src, out_dir / "bbb legendado.mp4", result


# Cues of legendas_ptbr.srt: 0.3-1.9, 2.0-3.6, 3.7-5.1 s. Frames are every 40 ms.
INSIDE_S = [0.4, 1.0, 1.84, 2.04, 2.8, 3.56, 3.72, 4.4, 5.04]
OUTSIDE_S = [0.0, 0.2, 1.92, 1.96, 3.6, 3.64, 5.12, 5.2]


def test_bbb_result_matches_the_file(bbb):
    src, out, result = bbb
    assert (result.width_px, result.height_px, result.frames) == (1280, 720, 132)
    assert (result.subtitle_format, result.subtitle_encoding, result.cues) == ("srt", "utf-8", 3)
    assert result.missing_glyphs == [] and result.warnings == [] and result.encoder == "libx264"
    assert result.size_bytes == out.stat().st_size and is_faststart(out)
    video = probe(out).first("video")
    assert video is not None and (video.codec_name, video.profile, video.pix_fmt) == ("h264", "High", "yuv420p")


def test_bbb_cues_are_visible_in_their_time_and_absent_outside(bbb):
    src, out, _ = bbb
    bottom = (0.75, 1.0)
    inside = {t: band_diff(gray_frame(src, t), gray_frame(out, t), bottom) for t in INSIDE_S}
    outside = {t: band_diff(gray_frame(src, t), gray_frame(out, t), bottom) for t in OUTSIDE_S}
    top = {t: band_diff(gray_frame(src, t), gray_frame(out, t), (0.0, 0.6)) for t in INSIDE_S[::3]}
    print(f"caption band diff inside cues {inside}, outside {outside}, top of picture {top}")
    assert min(inside.values()) > CUE_MIN
    assert max(outside.values()) < NOISE_MAX
    assert max(top.values()) < NOISE_MAX  # the captions stay in the bottom band


def _audio_packet_hashes(path: Path) -> list[str]:
    out = _sh(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a", "-c", "copy",
               "-f", "framemd5", "pipe:1"]).decode()
    return [line.rsplit(",", 1)[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def test_bbb_audio_is_copied_packet_for_packet_and_duration_kept(bbb):
    src, out, result = bbb
    src_info, out_info = probe(src), probe(out)
    src_audio, out_audio = src_info.first("audio"), out_info.first("audio")
    assert src_audio is not None and out_audio is not None
    assert (out_audio.codec_name, out_audio.channels, out_audio.sample_rate) == ("aac", 6, src_audio.sample_rate)
    hashes = _audio_packet_hashes(out)
    assert len(hashes) == 249 and hashes == _audio_packet_hashes(src)
    out_video, src_video = out_info.first("video"), src_info.first("video")
    assert abs(out_video.duration_s - src_video.duration_s) <= 1 / 25  # 5.28 s video, within one frame
    assert abs(out_info.duration_s - src_info.duration_s) <= 1 / 25  # 5.312 s: the audio runs a bit longer
    assert result.duration_s == pytest.approx(src_info.duration_s, abs=1 / 25)


# --- awkward inputs ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.6 s of Big Buck Bunny at 320x180 with its 5.1 audio."""
    return make_clip(media_dir / "videos" / "bigbuckbunny_720p25_5ch.mp4",
                     tmp_path_factory.mktemp("small") / "small.mp4")


ONE_CUE = [(0.4, 1.2, "Legenda de teste")]


def test_phone_rotation_comes_out_upright_without_a_rotation_tag(small, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    _sh(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(small), "-c", "copy",
         "-metadata:s:v", "rotate=90", str(rotated)])
    video_in = probe(rotated).first("video")
    assert video_in is not None and abs(video_in.rotation_deg) == 90 and (video_in.width, video_in.height) == (320, 180)
    out = tmp_path / "out.mp4"
    result = caption(rotated, write_srt(tmp_path / "s.srt", ONE_CUE), out)
    video_out = probe(out).first("video")
    assert video_out is not None and video_out.rotation_deg == 0
    assert (result.width_px, result.height_px) == (video_out.width, video_out.height) == (180, 320)
    # The caption sits at the bottom of the upright picture: compare with the input decoded upright.
    assert band_diff(gray_frame(rotated, 0.8), gray_frame(out, 0.8), (0.8, 1.0)) > CUE_MIN
    assert band_diff(gray_frame(rotated, 0.8), gray_frame(out, 0.8), (0.0, 0.6)) < NOISE_MAX
    assert band_diff(gray_frame(rotated, 1.4), gray_frame(out, 1.4), (0.8, 1.0)) < NOISE_MAX


def _frame_times(path: Path) -> list[float]:
    out = _sh(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
               "-of", "json", str(path)])
    return sorted(float(p["pts_time"]) for p in json.loads(out)["packets"])


def test_variable_frame_rate_keeps_every_timestamp(small, tmp_path):
    vfr = make_clip(small, tmp_path / "vfr.mp4",
                    vf="select='lt(n\\,10)+not(mod(n\\,3))',scale=320:180",
                    args=["-fps_mode", "vfr", "-c:v", "libx264", "-preset", "superfast", "-pix_fmt", "yuv420p"])
    times_in = _frame_times(vfr)
    gaps = {round(b - a, 3) for a, b in zip(times_in, times_in[1:])}
    assert gaps == {0.04, 0.12}  # really variable: 40 ms steps, then 120 ms steps
    out = tmp_path / "out.mp4"
    result = caption(vfr, write_srt(tmp_path / "s.srt", ONE_CUE), out)
    times_out = _frame_times(out)
    assert len(times_out) == len(times_in) == result.frames
    assert max(abs(a - b) for a, b in zip(times_in, times_out)) < 0.001
    # In sync: the frame at 1.0 s (inside the cue) has the caption, the one at 1.32 s does not.
    assert band_diff(gray_frame(vfr, 1.0), gray_frame(out, 1.0), (0.75, 1.0)) > CUE_MIN
    assert band_diff(gray_frame(vfr, 1.32), gray_frame(out, 1.32), (0.75, 1.0)) < NOISE_MAX


@pytest.mark.parametrize(
    ("name", "args", "vf", "pix_fmt_in"),
    [
        ("10bit", ["-c:v", "libx264", "-preset", "superfast", "-profile:v", "high10", "-pix_fmt", "yuv420p10le"],
         "scale=320:180", "yuv420p10le"),
        ("444_odd_size", ["-c:v", "libx264", "-preset", "superfast", "-pix_fmt", "yuv444p"],
         "scale=321:181", "yuv444p"),
    ],
)
def test_high_bit_depth_and_444_become_8bit_420_high(small, tmp_path, name, args, vf, pix_fmt_in):
    src = make_clip(small, tmp_path / f"{name}.mp4", seconds=1.2, args=args, vf=vf)
    assert probe(src).first("video").pix_fmt == pix_fmt_in
    out = tmp_path / "out.mp4"
    result = caption(src, write_srt(tmp_path / "s.srt", ONE_CUE), out)
    video = probe(out).first("video")
    assert (video.codec_name, video.profile, video.pix_fmt) == ("h264", "High", "yuv420p")
    assert (result.width_px, result.height_px) == (320, 180)
    assert band_diff(gray_frame(src, 0.8), gray_frame(out, 0.8), (0.75, 1.0)) > CUE_MIN


def test_video_without_audio(media_dir, tmp_path):
    src = make_clip(media_dir / "videos" / "bikes_640x272_noaudio.mp4", tmp_path / "bikes.mp4", seconds=1.2,
                    vf="scale=320:136", audio=False)
    out = tmp_path / "out.mp4"
    result = caption(src, write_srt(tmp_path / "s.srt", ONE_CUE), out)
    assert probe(out).first("audio") is None and result.cues == 1


def test_arabic_and_cjk_render_and_a_missing_glyph_is_reported(small, tmp_path):
    cues = [(0.0, 0.5, "مرحبا بالعالم! هذا اختبار."), (0.5, 1.0, "你好，世界 日本語のテスト"),
            (1.0, 1.5, "símbolo \ue000 \U0001f9ff")]
    out = tmp_path / "out.mp4"
    result = caption(small, write_srt(tmp_path / "s.srt", cues), out, style={"font_size_pct": 9})
    assert result.missing_glyphs == ["U+E000", "U+1F9FF"]
    assert any("U+E000" in w for w in result.warnings)
    for t in (0.24, 0.76):
        assert band_diff(gray_frame(small, t), gray_frame(out, t), (0.75, 1.0)) > CUE_MIN, t


def test_ass_script_keeps_its_own_style(small, tmp_path):
    script = (Path(__file__).parent / "test_subtitles.py").read_text(encoding="utf-8")
    ass = script.split('ASS_SCRIPT = """', 1)[1].split('"""', 1)[0].replace("\\\\", "\\")
    subs = tmp_path / "top.ass"
    subs.write_text(ass, encoding="utf-8")
    out = tmp_path / "out.mp4"
    result = caption(small, subs, out)
    assert (result.subtitle_format, result.cues, result.cues_dropped) == ("ass", 1, 1)
    frame_in, frame_out = gray_frame(small, 0.6), gray_frame(out, 0.6)
    assert band_diff(frame_in, frame_out, (0.0, 0.3)) > CUE_MIN  # the script's style is top-aligned
    assert band_diff(frame_in, frame_out, (0.7, 1.0)) < NOISE_MAX


def test_cues_past_the_end_are_clipped_not_errors(small, tmp_path):
    cues = [(0.2, 0.6, "cedo"), (1.0, 9.0, "passa do fim"), (3.0, 4.0, "depois do fim")]
    result = caption(small, write_srt(tmp_path / "s.srt", cues), tmp_path / "out.mp4")
    assert (result.cues, result.cues_clipped, result.cues_dropped) == (2, 1, 1)
    assert len(result.warnings) == 2


def test_an_html_page_as_subtitles_fails_before_the_video_download(small, tmp_path, origin):
    url_srt = origin.add("/legendas.srt", b"<!doctype html><html><body>Login required</body></html>",
                         content_type="text/html")
    url_video = origin.add("/video.mp4", small.read_bytes(), content_type="video/mp4")
    job = CaptionJob(id="cap-html", url_video=url_video, url_srt=url_srt, filename="o.mp4",
                     output={"kind": "file", "path": str(tmp_path / "o.mp4")})
    with pytest.raises(InputError) as info:
        render_caption(job)
    assert (info.value.item_id, info.value.field) == ("cap-html", "url_srt")
    assert "HTML page" in str(info.value)
    assert origin.routes["/video.mp4"].hits == 0 and not (tmp_path / "o.mp4").exists()


def test_a_file_that_is_not_a_video_is_refused(tmp_path, media_dir):
    not_video = tmp_path / "video.mp4"
    not_video.write_bytes(b"this is not a video")
    with pytest.raises(InputError) as info:
        inspect_video(not_video)
    assert info.value.field == "url_video"
    with pytest.raises(InputError) as info:
        caption(not_video, media_dir / "subtitles" / "legendas_ptbr.srt", tmp_path / "out.mp4")
    assert (info.value.item_id, info.value.field) == ("cap-1", "url_video")
