"""Encoder selection on this (GPU-less) machine and input download limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_image import encoders, media_io
from worker_image.errors import DownloadError, InputError


def test_nvenc_is_probed_by_a_real_encode_and_libx264_is_the_fallback():
    encoders.nvenc_available.cache_clear()
    available = encoders.nvenc_available()  # a 1-frame h264_nvenc encode; fails without an NVIDIA driver
    assert encoders.select_encoder("libx264") == "libx264"
    assert encoders.select_encoder("auto") == ("h264_nvenc" if available else "libx264")
    if not available:
        with pytest.raises(InputError) as err:
            encoders.select_encoder("h264_nvenc")
        assert err.value.field == "settings.encoder"


def test_download_over_the_byte_limit_is_refused(origin, tmp_path: Path):
    url = origin.add("/big.jpg", b"x" * 5000)
    with pytest.raises(InputError, match="5000 bytes, over the 4096-byte limit"):
        media_io.fetch(url, tmp_path / "in.bin", max_bytes=4096, allow_local=False, field="image_url")


def test_connection_refused_is_a_retryable_download_error(tmp_path: Path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        media_io.fetch(f"http://127.0.0.1:{port}/a.jpg", tmp_path / "in.bin", max_bytes=10, allow_local=False,
                       field="image_url")
    assert err.value.retryable and "a.jpg" in str(err.value)


def test_presigned_query_strings_never_reach_error_messages(origin, tmp_path: Path):
    url = origin.base_url + "/gone.jpg?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA"
    with pytest.raises(DownloadError) as err:
        media_io.fetch(url, tmp_path / "in.bin", max_bytes=10, allow_local=False, field="image_url")
    assert "Signature" not in str(err.value) and "AKIA" not in str(err.value)


@pytest.mark.parametrize(("path", "error", "retryable", "text"), [
    ("/loop", DownloadError, False, "redirected more than 5 times"),
    ("/fake-gzip", InputError, False, "Content-Encoding"),
])
def test_protocol_failures_are_typed(origin, tmp_path: Path, path: str, error: type, retryable: bool, text: str):
    with pytest.raises(error, match=text) as err:
        media_io.fetch(origin.base_url + path, tmp_path / "in.bin", max_bytes=1000, allow_local=False, field="image_url")
    assert err.value.retryable is retryable and err.value.field == "image_url"


def test_credentials_in_urls_never_reach_error_messages(origin, tmp_path: Path):
    host = origin.base_url.split("//", 1)[1]
    with pytest.raises(DownloadError) as err:
        media_io.fetch(f"http://user:hunter2@{host}/gone.jpg", tmp_path / "in.bin", max_bytes=10, allow_local=False,
                       field="image_url")
    assert "hunter2" not in str(err.value) and "user" not in str(err.value)


def test_one_clip_failing_unexpectedly_keeps_the_others(origin, tmp_path: Path, example_photos: Path):
    from worker_image.contract import ClipJob, FileOutput, Img2VidJob, RenderSettings
    from worker_image.engine import run_img2vid_job

    clips = [
        ClipJob(id="ok", image_url=str(example_photos / "rocket_640x427.jpg"), duration_s=0.5, filename="v1.mp4",
                output=FileOutput(path=str(tmp_path / "v1.mp4"))),
        ClipJob(id="loop", image_url=origin.base_url + "/loop", duration_s=0.5, filename="v2.mp4",
                output=FileOutput(path=str(tmp_path / "v2.mp4"))),
        ClipJob(id="ok2", image_url=str(example_photos / "leaf_1920x1080.jpg"), duration_s=0.5, filename="v3.mp4",
                output=FileOutput(path=str(tmp_path / "v3.mp4"))),
    ]
    settings = RenderSettings(width_px=160, height_px=90, x264_preset="superfast")
    results = run_img2vid_job(Img2VidJob(clips=clips, settings=settings), allow_local_inputs=True)["results"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["error"]["type"] == "DownloadError" and results[1]["error"]["item_id"] == "loop"


def test_local_inputs_outside_the_allowed_folders_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("API_GPU_LOCAL_INPUT_ROOTS", str(tmp_path))
    for path in ("/etc/passwd", "/etc/does-not-exist", str(tmp_path / ".." / "escape.jpg")):
        with pytest.raises(InputError, match="inside the allowed folders") as err:
            media_io.fetch(path, tmp_path / "in.bin", max_bytes=10**6, allow_local=True, field="url_srt")
        assert "root:" not in str(err.value)  # nothing of the file, not even whether it exists
    inside = tmp_path / "ok.srt"
    inside.write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    assert media_io.fetch(str(inside), tmp_path / "in.bin", max_bytes=10**6, allow_local=True, field="url_srt").exists()
