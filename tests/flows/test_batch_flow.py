"""The batch flow on Prefect's test harness: a 5-request manifest of all three operations, subflows in
threads linked to the batch run, done markers, a rerun that renders nothing, an edited request that
renders again, invalid entries reported without stopping the others, and manifests over HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from pydantic import ValidationError

from flows.batch import batch
from tasks.batch import BatchRequest, default_prefix, parse_manifest
from tasks.errors import RequestError

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPO = Path(__file__).resolve().parents[2]
MEDIA = REPO / "examples" / "media"
PHOTOS = REPO / "examples" / "photos"
TINY = {"width_px": 320, "height_px": 180, "x264_preset": "superfast"}


def five_requests() -> list[dict]:
    """Three tiny img2vid requests, one caption, one addaudio (real media from examples/)."""
    reqs = [
        {"operation": "img2vid", "request_id": f"clips-{n}",
         "body": {"images": [{"id": f"img-{n}", "image_url": str(PHOTOS / photo), "duracao": 0.5}],
                  "path": f"Batch/clips-{n}/", "settings": TINY}}
        for n, photo in enumerate(["leaf_1920x1080.jpg", "rocket_640x427.jpg", "boats_portrait_900x1600.jpg"])
    ]
    reqs.append({"operation": "caption", "request_id": "captioned",
                 "body": {"url_video": str(MEDIA / "bigbuckbunny_720p25_5ch.mp4"), "url_srt": str(MEDIA / "legendas_ptbr.srt"),
                          "path": "Batch/captioned/", "output_filename": "legendado.mp4",
                          "settings": {"encoder": "libx264", "x264_preset": "superfast"}}})
    reqs.append({"operation": "addaudio", "request_id": "narrated",
                 "body": {"url_video": str(MEDIA / "bigbuckbunny_720p25_5ch.mp4"), "url_audio": str(MEDIA / "narration_ptbr.mp3"),
                          "path": "Batch/narrated/", "output_filename": "com_audio.mp4"}})
    return reqs


def write_jsonl(path: Path, requests: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests), encoding="utf-8")
    return path


async def _children(flow_run_id: str) -> list:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))


def run_batch(**params) -> tuple[object, dict]:
    state = batch(**params, return_state=True)
    return state, state.result(raise_on_failure=False)


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*.mp4")}


def test_five_requests_render_once_then_rerun_renders_nothing(tmp_path: Path, renders_dir: Path):
    manifest = write_jsonl(tmp_path / "nightly.jsonl", five_requests())

    state, summary = run_batch(manifest=str(manifest), max_concurrency=2)
    assert state.is_completed(), state.message
    assert summary["code"] == 200 and summary["stats"] == {"total": 5, "rendered": 5, "skipped": 0, "failed": 0, "invalid": 0}
    assert [it["request_id"] for it in summary["items"]] == ["clips-0", "clips-1", "clips-2", "captioned", "narrated"]
    assert summary["items"][3]["keys"] == ["Batch/captioned/legendado.mp4"]
    # Subflows run in threads and are linked to the batch run as its children, named after the request.
    batch_run_id = str(state.state_details.flow_run_id)
    children = asyncio.run(_children(batch_run_id))
    assert sorted(r.name for r in children) == ["addaudio-narrated", "caption-captioned", "img2vid-clips-0",
                                                "img2vid-clips-1", "img2vid-clips-2"]
    assert all(r.state.is_completed() for r in children)
    assert {str(r.id) for r in children} == {it["flow_run_id"] for it in summary["items"]}
    # State next to the outputs: a summary and one done marker per request, by default under batches/<name>/.
    state_dir = renders_dir / "batches" / "nightly"
    on_disk = json.loads((state_dir / "batch-summary.json").read_text())
    assert on_disk["stats"]["rendered"] == 5 and summary["summary_key"] == "batches/nightly/batch-summary.json"
    assert sorted(p.name for p in (state_dir / "done").iterdir()) == [
        "captioned.json", "clips-0.json", "clips-1.json", "clips-2.json", "narrated.json"]
    assert not list(state_dir.rglob("*.part"))
    before = mtimes(renders_dir)
    assert len(before) == 5

    state2, summary2 = run_batch(manifest=str(manifest), max_concurrency=2)
    assert state2.is_completed(), state2.message
    assert summary2["stats"] == {"total": 5, "rendered": 0, "skipped": 5, "failed": 0, "invalid": 0}
    assert [it["flow_run_id"] for it in summary2["items"]] == [it["flow_run_id"] for it in summary["items"]]
    assert asyncio.run(_children(str(state2.state_details.flow_run_id))) == []
    assert mtimes(renders_dir) == before


def test_rerun_after_a_crash_renders_only_what_is_missing(tmp_path: Path, renders_dir: Path):
    reqs = five_requests()[:3]
    manifest = write_jsonl(tmp_path / "m.jsonl", reqs)
    state, summary = run_batch(manifest=str(manifest), path="jobs/night-1")
    assert state.is_completed(), state.message
    done = renders_dir / "jobs" / "night-1" / "done"
    # A crash after clips-0 finished but before the others: only clips-0's marker survives.
    (done / "clips-1.json").unlink()
    (done / "clips-2.json").unlink()
    # And clips-2 was edited meanwhile (its marker would not count anyway: the body's hash differs).
    reqs[2]["body"]["images"][0]["duracao"] = 0.75
    write_jsonl(manifest, reqs)
    before = mtimes(renders_dir)
    state2, summary2 = run_batch(manifest=str(manifest), path="jobs/night-1")
    assert state2.is_completed(), state2.message
    assert [it["status"] for it in summary2["items"]] == ["skipped", "rendered", "rendered"]
    after = mtimes(renders_dir)
    assert after["Batch/clips-0/video_1.mp4"] == before["Batch/clips-0/video_1.mp4"]
    assert after["Batch/clips-1/video_1.mp4"] != before["Batch/clips-1/video_1.mp4"]
    # An edited body is rendered again even when its done marker exists.
    reqs[0]["body"]["images"][0]["duracao"] = 1.0
    write_jsonl(manifest, reqs)
    _, summary3 = run_batch(manifest=str(manifest), path="jobs/night-1")
    assert [it["status"] for it in summary3["items"]] == ["rendered", "skipped", "skipped"]


def test_invalid_and_failing_requests_are_reported_and_the_others_render(tmp_path: Path, renders_dir: Path):
    reqs = five_requests()[:2]
    reqs.append({"operation": "img2vid", "request_id": "bad-settings",
                 "body": {"images": [{"id": "x", "image_url": str(PHOTOS / "leaf_1920x1080.jpg"), "duracao": 0.5}],
                          "path": "Batch/bad/", "settings": {"width_px": 33}}})
    reqs.append({"operation": "caption", "request_id": "unknown-field",
                 "body": {"url_video": "v.mp4", "url_srt": "s.srt", "path": "p/", "output_filename": "o.mp4", "colour": 1}})
    reqs.append({"operation": "img2vid", "request_id": "same-key-as-clips-0",
                 "body": {"images": [{"id": "y", "image_url": str(PHOTOS / "rocket_640x427.jpg"), "duracao": 0.5}],
                          "path": "Batch/clips-0/", "settings": TINY}})
    reqs.append({"operation": "img2vid", "request_id": "missing-photo",
                 "body": {"images": [{"id": "gone", "image_url": str(tmp_path / "nope.jpg"), "duracao": 0.5}],
                          "path": "Batch/missing/", "settings": TINY}})
    manifest = tmp_path / "mixed.json"
    manifest.write_text(json.dumps(reqs), encoding="utf-8")  # a JSON list works as well as JSON Lines

    state, summary = run_batch(manifest=manifest.as_uri(), max_concurrency=3)
    assert state.is_failed() and summary["code"] == 207
    by_id = {it["request_id"]: it for it in summary["items"]}
    assert by_id["bad-settings"]["status"] == "invalid" and "settings.width_px" in by_id["bad-settings"]["message"]
    assert by_id["unknown-field"]["status"] == "invalid" and "colour" in by_id["unknown-field"]["message"]
    assert by_id["missing-photo"]["status"] == "failed" and by_id["missing-photo"]["code"] == 422
    clash = by_id["same-key-as-clips-0"]  # would overwrite clips-0's video_1.mp4: refused, clips-0 kept
    assert clash["status"] == "invalid" and "Batch/clips-0/video_1.mp4" in clash["message"] and "clips-0" in clash["message"]
    assert by_id["clips-0"]["status"] == by_id["clips-1"]["status"] == "rendered"
    done = renders_dir / "batches" / "mixed" / "done"
    assert sorted(p.name for p in done.iterdir()) == ["clips-0.json", "clips-1.json"]


def test_manifest_over_http_and_state_in_a_chosen_prefix(tmp_path: Path, renders_dir: Path, origin):
    body = "".join(json.dumps(r) + "\n" for r in five_requests()[:1]).encode()
    url = origin.add("/manifests/today.jsonl", body, content_type="application/x-ndjson")
    state, summary = run_batch(manifest=url + "?X-Amz-Signature=secret", path="Canal/batches/today/")
    assert state.is_completed(), state.message
    assert summary["manifest"] == url and "secret" not in json.dumps(summary)
    assert (renders_dir / "Canal" / "batches" / "today" / "batch-summary.json").is_file()


def test_manifest_as_a_key_in_storage(tmp_path: Path, renders_dir: Path):
    key = "manifests/weekly.jsonl"
    write_jsonl((renders_dir / "manifests").mkdir(parents=True) or renders_dir / key, five_requests()[1:2])
    state, summary = run_batch(manifest=key)
    assert state.is_completed(), state.message
    assert summary["prefix"] == "batches/weekly/" and summary["items"][0]["status"] == "rendered"


def test_unreadable_manifests_fail_before_rendering(tmp_path: Path, renders_dir: Path, origin):
    for manifest, needle in [
        (str(tmp_path / "absent.jsonl"), "No such file or directory"),
        ("manifests/absent.jsonl", "is not a URL, an existing file, nor a key in storage 'local'"),
        (origin.base_url + "/missing.jsonl", "answered HTTP 404"),
    ]:
        state, result = run_batch(manifest=manifest)
        assert state.is_failed() and isinstance(result, RequestError) and needle in str(result), result
    assert not renders_dir.exists() or not list(renders_dir.rglob("*.mp4"))


def test_manifest_contract():
    good = {"operation": "caption", "request_id": "a.b_c-1", "body": {}}
    assert parse_manifest(json.dumps([good]).encode(), source="m")[0] == BatchRequest(**good)
    cases = [
        (b"", "holds no requests"),
        (b"[{]", "not valid JSON"),
        (b'{"operation": "img2vid"\n', "line 1 is not valid JSON"),
        (json.dumps([{**good, "operation": "upscale"}]).encode(), "manifest[0].operation"),
        (json.dumps([{**good, "request_id": "../etc"}]).encode(), "manifest[0].request_id"),
        (json.dumps([{**good, "extra": 1}]).encode(), "manifest[0].extra"),
        (json.dumps([good, good]).encode(), "manifest[1].request_id: 'a.b_c-1' is also entry 0"),
    ]
    for data, needle in cases:
        with pytest.raises(RequestError) as info:
            parse_manifest(data, source="m")
        assert needle in str(info.value), (data, str(info.value))
    with pytest.raises(ValidationError):
        BatchRequest(operation="img2vid", request_id="x", body={}, surprise=True)
    assert default_prefix("https://h/x/Night Run.v2.jsonl?sig=1") == "batches/Night-Run/"
    assert BatchRequest(**good).body_sha256() == BatchRequest(**{**good, "body": {}}).body_sha256()
