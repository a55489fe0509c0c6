"""Matroska/WebM inputs (browser recordings): stream lengths come from DURATION tags, not ``duration``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.mediatools import ffprobe_json
from worker_image.addaudio import render_addaudio
from worker_image.caption import render_caption
from worker_image.contract import AddAudioJob, CaptionJob, FileOutput
from worker_image.probe import probe


@pytest.fixture(scope="module")
def mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of video with 3.5 s of audio in Matroska: the container is as long as the audio."""
    path = tmp_path_factory.mktemp("mkv") / "recording.mkv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=s=160x90:r=25:d=2",
                    "-f", "lavfi", "-i", "sine=d=3.5", "-c:v", "libx264", "-preset", "superfast", "-c:a", "aac",
                    str(path)], check=True)
    return path


def test_probe_reads_matroska_stream_lengths(mkv: Path):
    info = probe(mkv)
    assert info.first("video").duration_s == pytest.approx(2.0, abs=0.04)
    assert info.first("audio").duration_s == pytest.approx(3.5, abs=0.05)


def test_addaudio_on_matroska_cuts_to_the_video(mkv: Path, media_dir: Path, tmp_path: Path):
    out = tmp_path / "a.mp4"
    result = render_addaudio(AddAudioJob(url_video=str(mkv), url_audio=str(media_dir / "audio" / "narration_ptbr.mp3"),
                                         filename="a.mp4", output=FileOutput(path=str(out))), allow_local_inputs=True)
    streams = {s["codec_type"]: float(s["duration"]) for s in ffprobe_json(out)["streams"]}
    assert streams["video"] == pytest.approx(2.0, abs=1 / 25 + 1e-3) and abs(streams["audio"] - streams["video"]) <= 0.05
    assert result.video_duration_s == pytest.approx(2.0, abs=1 / 25 + 1e-3)


def test_caption_on_matroska_keeps_every_frame(mkv: Path, media_dir: Path, tmp_path: Path):
    out = tmp_path / "c.mp4"
    result = render_caption(CaptionJob(id="c", url_video=str(mkv), url_srt=str(media_dir / "subtitles" / "legendas_ptbr.srt"),
                                       filename="c.mp4", output=FileOutput(path=str(out)), x264_preset="superfast"),
                            allow_local_inputs=True)
    assert result.frames == 50
