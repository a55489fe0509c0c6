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
