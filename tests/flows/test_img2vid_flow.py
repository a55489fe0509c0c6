"""The img2vid flow end to end on Prefect's test harness: seed request in, seed response out."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.img2vid import img2vid
from tests.mediatools import ffprobe_json
from tests.worker.test_imaging import png_bomb

SMALL = {"width_px": 320, "height_px": 180, "x264_preset": "superfast"}

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def _artifacts(flow_run_id: str) -> dict[str, object]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_seed_request_renders_every_image_in_order(example_photos: Path, media_dir: Path, renders_dir: Path, origin):
    url = origin.add("/leaf.jpg", (example_photos / "leaf_1920x1080.jpg").read_bytes(), content_type="image/jpeg")
    body = {
        "images": [
            {"id": "portrait", "image_url": str(example_photos / "boats_portrait_900x1600.jpg"), "duracao": 1.0},
            {"id": "from-http", "image_url": url, "duracao": 0.5},
            {"id": "rocket", "image_url": (example_photos / "rocket_640x427.jpg").as_uri(), "duration_s": 1.25},
        ],
        "path": "Projeto Ação/Vídeo 1/videos/temp/",
    }
    state = img2vid(**body, settings=SMALL, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["code"] == 200 and result["message"] == "3 of 3 rendered"
    assert [v["filename"] for v in result["videos"]] == ["video_1.mp4", "video_2.mp4", "video_3.mp4"]
    assert [v["id"] for v in result["videos"]] == ["portrait", "from-http", "rocket"]
    folder = renders_dir / "Projeto Ação" / "Vídeo 1" / "videos" / "temp"
    for video, duration_s in zip(result["videos"], [1.0, 0.5, 1.25]):
        path = folder / video["filename"]
        assert video["video_url"] == path.as_uri() and video["url_kind"] == "file"
        probe = ffprobe_json(path)
        assert int(probe["streams"][0]["nb_read_frames"]) == video["frames"] == round(duration_s * 24)
        assert (video["width"], video["height"]) == (320, 180) and video["size_bytes"] == path.stat().st_size
        assert video["encoder"] == "libx264" and video["duration_s"] == pytest.approx(duration_s, abs=1 / 24)
    assert result["stats"]["total"] == 3 and result["stats"]["processed"] == 3 and result["stats"]["jobId"]
    assert result["execution"]["durationMs"] > 0
    artifacts = __import__("asyncio").run(_artifacts(result["stats"]["jobId"]))
    assert {"img2vid-progress", "img2vid-clips", "img2vid-result"} <= set(artifacts)
    assert artifacts["img2vid-progress"].data == 100.0
    assert len(artifacts["img2vid-clips"].data if isinstance(artifacts["img2vid-clips"].data, list) else
               __import__("json").loads(artifacts["img2vid-clips"].data)) == 3


def test_bad_images_fail_alone_with_typed_errors(example_photos: Path, renders_dir: Path, origin):
    dead = origin.base_url + "/missing.jpg"
    html = origin.add("/login.jpg", b"<!doctype html><html>Please log in</html>", content_type="text/html")
    bomb = origin.add("/bomb.png", png_bomb(20000, 20000), content_type="image/png")
    body = {
        "images": [
            {"id": "good-1", "image_url": str(example_photos / "rocket_640x427.jpg"), "duracao": 0.5},
            {"id": "dead-link", "image_url": dead, "duracao": 0.5},
            {"id": "html-page", "image_url": html, "duracao": 0.5},
            {"id": "bomb", "image_url": bomb, "duracao": 0.5},
            {"id": "good-2", "image_url": str(example_photos / "leaf_1920x1080.jpg"), "duracao": 0.5},
        ],
        "path": "batch/",
    }
    state = img2vid(**body, settings=SMALL, return_state=True)
    assert state.is_failed() and state.message == "2 of 5 rendered; 3 failed"
    result = state.result(raise_on_failure=False)
    assert result["code"] == 207
    assert [v["id"] for v in result["videos"]] == ["good-1", "good-2"]
    assert [v["filename"] for v in result["videos"]] == ["video_1.mp4", "video_5.mp4"]
    errors = {f["id"]: f["error"] for f in result["failed"]}
    assert [f["filename"] for f in result["failed"]] == ["video_2.mp4", "video_3.mp4", "video_4.mp4"]
    assert errors["dead-link"]["type"] == "DownloadError" and "404" in errors["dead-link"]["message"]
    assert errors["html-page"]["type"] == "InputError" and "HTML" in errors["html-page"]["message"]
    assert errors["bomb"]["type"] == "InputError" and "over the limit" in errors["bomb"]["message"]
    for image_id, error in errors.items():
        assert image_id in error["message"] and error["field"] == "image_url" and error["retryable"] is False
    assert origin.routes.get("/missing.jpg") is None  # (never registered: a 404 on every hit)
    assert origin.routes["/login.jpg"].hits == 1  # bad input is not retried
    assert sorted(p.name for p in (renders_dir / "batch").iterdir()) == ["video_1.mp4", "video_5.mp4"]


def test_transient_download_errors_are_retried(example_photos: Path, renders_dir: Path, origin):
    url = origin.add("/flaky.jpg", (example_photos / "rocket_640x427.jpg").read_bytes(), statuses=[503, 200])
    state = img2vid(images=[{"id": "flaky", "image_url": url, "duracao": 0.5}], path="retry/", settings=SMALL,
                    return_state=True)
    assert state.is_completed(), state.message
    assert origin.routes["/flaky.jpg"].hits == 2


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({"id": "too-long", "image_url": "https://example.com/a.jpg", "duracao": 601}, ["'too-long'", "duration_s", "less than or equal to 300"]),
        ({"id": "negative", "image_url": "https://example.com/a.jpg", "duracao": -1}, ["'negative'", "duration_s", "greater than 0"]),
        ({"id": "ftp", "image_url": "ftp://example.com/a.jpg", "duracao": 1}, ["'ftp'", "image_url", "scheme 'ftp'"]),
        ({"id": "typo", "image_url": "https://example.com/a.jpg", "duracao": 1, "duraton": 2}, ["'typo'", "duraton", "Extra inputs"]),
    ],
)
def test_out_of_bounds_input_is_rejected_naming_the_image_and_field(image, expected, renders_dir: Path):
    with pytest.raises(Exception) as err:
        img2vid(images=[image], path="x/")
    for text in expected:
        assert text in str(err.value)
    assert not renders_dir.exists()  # nothing rendered


def test_unsafe_path_is_rejected(example_photos: Path, renders_dir: Path):
    state = img2vid(images=[{"id": "a", "image_url": str(example_photos / "rocket_640x427.jpg"), "duracao": 0.5}],
                    path="../outside/", return_state=True)
    assert state.is_failed() and "path" in state.message and ".." in state.message
    assert not renders_dir.exists()
