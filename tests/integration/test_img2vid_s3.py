"""img2vid end to end into an S3 bucket: a real Prefect API, the local backend, presigned PUTs, HEAD checks."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest
from prefect_aws import MinIOCredentials, S3Bucket

from blocks.s3 import S3OutputStorage
from flows.img2vid import img2vid
from tests.mediatools import ffprobe_json
from tests.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, S3Endpoint

SMALL = {"width_px": 320, "height_px": 180, "x264_preset": "superfast"}

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _save_storage(endpoint: S3Endpoint, bucket: str, *, secret_key: str = SECRET_KEY,
                  public_base_url: str | None = None) -> str:
    """Save an S3OutputStorage block for ``bucket`` and return its name."""
    name = f"s3-{uuid.uuid4().hex[:8]}"
    creds = MinIOCredentials(minio_root_user=ACCESS_KEY, minio_root_password=secret_key, region_name=REGION,
                             aws_client_parameters={"endpoint_url": endpoint.endpoint_url})
    S3OutputStorage(bucket=S3Bucket(bucket_name=bucket, credentials=creds), public_base_url=public_base_url,
                    presigned_get_expiry_s=600).save(name)
    return name


def test_img2vid_renders_into_the_bucket(s3_endpoint: S3Endpoint, example_photos: Path, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    bucket = s3_endpoint.make_bucket(f"canais-{uuid.uuid4().hex[:8]}")
    storage = _save_storage(s3_endpoint, bucket)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a picture")
    body = {
        "images": [
            {"id": "rocket", "image_url": str(example_photos / "rocket_640x427.jpg"), "duracao": 1.0},
            {"id": "broken", "image_url": str(not_an_image), "duracao": 1.0},
            {"id": "leaf", "image_url": str(example_photos / "leaf_1920x1080.jpg"), "duracao": 1.0},
        ],
        "path": "Canal Ação/Vídeo 1+2 100%/日本/",
    }
    before = len(s3_endpoint.requests)
    state = img2vid(**body, settings=SMALL, storage=storage, return_state=True)
    assert state.is_failed() and state.message == "2 of 3 rendered; 1 failed"
    result = state.result(raise_on_failure=False)
    assert result["code"] == 207
    assert [v["id"] for v in result["videos"]] == ["rocket", "leaf"]
    assert [f["id"] for f in result["failed"]] == ["broken"]
    client = s3_endpoint.client()
    for video in result["videos"]:
        key = f"Canal Ação/Vídeo 1+2 100%/日本/{video['filename']}"
        assert video["key"] == key and video["url_kind"] == "presigned"
        data = httpx.get(video["video_url"]).content
        assert len(data) == video["size_bytes"]
        assert data == client.get_object(Bucket=bucket, Key=key)["Body"].read()
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ContentLength"] == video["size_bytes"] and head["ChecksumSHA256"]
        local = tmp_path / video["filename"]
        local.write_bytes(data)
        probe = ffprobe_json(local)
        assert int(probe["streams"][0]["nb_read_frames"]) == video["frames"] == 24
        assert (video["width"], video["height"]) == (320, 180)
    # the failed render left nothing at its key
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(o["Key"] for o in listed) == sorted(v["key"] for v in result["videos"])
    # uploads went through presigned PUTs (no Authorization header), and verification was a HEAD
    methods = [m for m, path, _ in s3_endpoint.requests[before:] if path.startswith(f"/{bucket}/")]
    assert methods.count("PUT") == 2 and methods.count("HEAD") >= 2
    # nothing of ours logs a presigned URL (the test server's own access log is not ours)
    assert not any("X-Amz-Signature" in r.getMessage() for r in caplog.records if r.name != "werkzeug")
    assert any("verified key" in r.getMessage() for r in caplog.records)


def test_img2vid_public_urls(s3_endpoint: S3Endpoint, example_photos: Path) -> None:
    bucket = s3_endpoint.make_bucket(f"canais-{uuid.uuid4().hex[:8]}")
    storage = _save_storage(s3_endpoint, bucket, public_base_url="https://cdn.example.com")
    state = img2vid(images=[{"id": "r", "image_url": str(example_photos / "rocket_640x427.jpg"), "duracao": 1.0}],
                    path="a b/", settings=SMALL, storage=storage, return_state=True)
    assert state.is_completed(), state.message
    video = state.result()["videos"][0]
    assert (video["video_url"], video["url_kind"]) == ("https://cdn.example.com/a%20b/video_1.mp4", "public")
    stored = s3_endpoint.client().get_object(Bucket=bucket, Key="a b/video_1.mp4")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() and len(stored) == video["size_bytes"]


def test_img2vid_with_wrong_credentials_fails_naming_the_bucket(s3_endpoint: S3Endpoint,
                                                                example_photos: Path) -> None:
    bucket = s3_endpoint.make_bucket(f"canais-{uuid.uuid4().hex[:8]}")
    storage = _save_storage(s3_endpoint, bucket, secret_key="wrong-secret")
    state = img2vid(images=[{"id": "r", "image_url": str(example_photos / "rocket_640x427.jpg"), "duracao": 1.0}],
                    path="x/", settings=SMALL, storage=storage, return_state=True)
    assert state.is_failed()
    assert f"bucket {bucket!r}" in state.message and "access denied" in state.message
    assert "wrong-secret" not in state.message
    assert "Contents" not in s3_endpoint.client().list_objects_v2(Bucket=bucket)


def test_img2vid_with_unknown_storage_name_fails_clearly(example_photos: Path) -> None:
    state = img2vid(images=[{"id": "r", "image_url": str(example_photos / "rocket_640x427.jpg"), "duracao": 1.0}],
                    path="x/", settings=SMALL, storage="no-such-storage", return_state=True)
    assert state.is_failed() and "no S3 Output Storage or S3 Bucket block" in state.message
