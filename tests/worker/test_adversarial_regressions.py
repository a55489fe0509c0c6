"""Regressions from adversarial testing: each input here once crashed, misreported or misbehaved."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pydantic
import pytest
from PIL import Image

from tasks.errors import InvalidKeyError
from tasks.keys import make_key, validate_filename
from worker_image import media_io, subtitles
from worker_image.addaudio import render_addaudio
from worker_image.contract import AddAudioJob, AddAudioOptions, CaptionJob, FileOutput, ImageInput
from worker_image.caption import render_caption
from worker_image.errors import InputError, UploadError
from worker_image.imaging import load_image
from tests.mediatools import ffprobe_json


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def cover_mp3(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of audio with the rocket photo as cover art (an 'attached picture' video stream)."""
    path = tmp_path_factory.mktemp("cover") / "cover.mp3"
    _ffmpeg("-f", "lavfi", "-i", "sine=d=3", "-i", str(media_dir / "photos" / "rocket_640x427.jpg"),
            "-map", "0", "-map", "1", "-c:v", "mjpeg", "-disposition:v", "attached_pic", str(path))
    return path


def test_cover_art_is_not_a_video_stream(cover_mp3: Path, media_dir: Path, tmp_path: Path):
    job = AddAudioJob(url_video=str(cover_mp3), url_audio=str(media_dir / "audio" / "narration_ptbr.mp3"),
                      filename="x.mp4", output=FileOutput(path=str(tmp_path / "x.mp4")))
    with pytest.raises(InputError, match="no video stream.*cover picture") as err:
        render_addaudio(job, allow_local_inputs=True)
    assert err.value.field == "url_video"
    caption = CaptionJob(id="c", url_video=str(cover_mp3), url_srt=str(media_dir / "subtitles" / "legendas_ptbr.srt"),
                         filename="c.mp4", output=FileOutput(path=str(tmp_path / "c.mp4")))
    with pytest.raises(InputError, match="no video stream") as err:
        render_caption(caption, allow_local_inputs=True)
    assert err.value.field == "url_video"


def test_cover_art_mp3_works_as_the_new_audio(cover_mp3: Path, media_dir: Path, tmp_path: Path):
    out = tmp_path / "y.mp4"
    result = render_addaudio(AddAudioJob(url_video=str(media_dir / "videos" / "bikes_640x272_noaudio.mp4"),
                                         url_audio=str(cover_mp3), filename="y.mp4", output=FileOutput(path=str(out))),
                             allow_local_inputs=True)
    assert result.duration_s == pytest.approx(3.0, abs=0.05)
    assert [s["codec_type"] for s in ffprobe_json(out)["streams"]] == ["video", "audio"]


def test_odd_sized_video_is_cropped_to_even_when_re_encoded(media_dir: Path, tmp_path: Path):
    odd = tmp_path / "odd.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=161x91:r=25:d=1", "-c:v", "libx264", "-preset", "superfast", str(odd))
    out = tmp_path / "out.mp4"
    render_addaudio(AddAudioJob(url_video=str(odd), url_audio=str(media_dir / "audio" / "narration_ptbr_mono48k.wav"),
                                filename="out.mp4", output=FileOutput(path=str(out)),
                                options=AddAudioOptions(length_policy="audio", x264_preset="superfast")),
                    allow_local_inputs=True)
    video = ffprobe_json(out)["streams"][0]
    assert (video["width"], video["height"], video["pix_fmt"]) == (160, 90, "yuv420p")


SRT = "1\n00:00:00,500 --> 00:00:02,000\nOlá\n\n2\n00:00:02,500 --> 00:00:04,000\nmundo\n"


def test_a_stray_events_line_does_not_make_an_srt_an_ass_script():
    doc = subtitles.parse_subtitles((SRT + "\n[Events]\n").encode())
    assert doc.format == "srt" and len(doc.cues) == 2 and doc.cues[0].text == "Olá"


def test_ass_without_script_info_gets_the_header_libass_needs():
    script = ("[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
              "Dialogue: 0,0:00:00.50,0:00:02.00,Default,,0,0,0,,Olá\n")
    doc = subtitles.parse_subtitles(script.encode())
    assert doc.format == "ass" and doc.ass_text.startswith("[Script Info]") and len(doc.cues) == 1


@pytest.mark.parametrize(("call", "field"), [
    (lambda: validate_filename("é" * 150 + ".mp4"), "output_filename"),
    (lambda: make_key("a" * 201 + "/", "x.mp4"), "path"),
])
def test_names_too_long_for_a_filesystem_are_refused_before_rendering(call, field):
    with pytest.raises(InvalidKeyError, match=f"{field} has a .*-byte name"):
        call()


@pytest.mark.parametrize(("image", "text"), [
    ({"id": "a\nforged log line", "image_url": "https://x/a.jpg", "duracao": 1}, "control characters"),
    ({"id": "nan", "image_url": "https://x/a.jpg", "duracao": float("nan")}, "finite number"),
    ({"id": "inf", "image_url": "https://x/a.jpg", "duration_s": float("inf")}, "finite number"),
])
def test_ids_and_durations_are_checked_for_what_breaks_logs_and_frame_counts(image, text):
    with pytest.raises(pydantic.ValidationError, match=text):
        ImageInput.model_validate(image)


def test_outputs_need_absolute_paths_and_never_replace_special_files(tmp_path: Path):
    with pytest.raises(pydantic.ValidationError, match="absolute"):
        FileOutput(path="renders/x.mp4")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    src = tmp_path / "src.mp4"
    src.write_bytes(b"x" * 10)
    with pytest.raises(UploadError, match="not a regular file"):
        media_io.deliver_file(src, fifo)
    assert fifo.is_fifo()


def test_16_bit_gray_converts_exactly_and_cheaply(tmp_path: Path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    out = np.asarray(load_image(path, max_pixels=100))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_srt_keeps_braced_text_and_drops_only_override_tags():
    doc = subtitles.parse_subtitles("1\n00:00:00,500 --> 00:00:02,000\n{\\an8}Olá {curly} mundo\n".encode())
    assert [c.text for c in doc.cues] == ["Olá {curly} mundo"]
