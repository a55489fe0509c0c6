"""The addaudio flow into an S3 bucket: ``<path>/<output_filename>`` through a presigned PUT, HEAD-verified."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.test_img2vid_s3 import _save_storage
from tests.mediatools import ffprobe_json
from tests.s3_endpoint import S3Endpoint

addaudio_flow = pytest.importorskip("flows.addaudio", reason="the addaudio flow is not in this tree").addaudio

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_addaudio_renders_into_the_bucket(s3_endpoint: S3Endpoint, media_dir: Path, tmp_path: Path) -> None:
    bucket = s3_endpoint.make_bucket(f"canais-{uuid.uuid4().hex[:8]}")
    storage = _save_storage(s3_endpoint, bucket)
    state = addaudio_flow(
        url_video=str(media_dir / "videos" / "bikes_640x272_noaudio.mp4"),
        url_audio=str(media_dir / "audio" / "narration_ptbr.mp3"),
        path="Canal Ação/Vídeo 1/videos/",
        output_filename="vídeo com áudio 100%.mp4",
        storage=storage,
        return_state=True,
    )
    assert state.is_completed(), state.message
    body = state.result()
    key = "Canal Ação/Vídeo 1/videos/vídeo com áudio 100%.mp4"
    assert body["key"] == key and body["url_kind"] == "presigned"
    data = httpx.get(body["video_url"]).content
    assert len(data) == body["size_bytes"]
    head = s3_endpoint.client().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == body["size_bytes"] and head["ChecksumSHA256"]
    local = tmp_path / "out.mp4"
    local.write_bytes(data)
    assert {s["codec_type"] for s in ffprobe_json(local)["streams"]} >= {"video", "audio"}
