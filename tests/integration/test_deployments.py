"""The deployments end to end, as a caller with only Prefect's REST API sees them.

One module-wide stack, started by the README's own command (``scripts/serve.sh``) in a private state
folder and port: a real Prefect server (SQLite, 127.0.0.1), the process work pool, our block types,
``prefect deploy --all`` of prefect.yaml, and a process worker. Then, over plain HTTP (httpx): find each
deployment by name, create runs with seed request bodies and idempotency keys, poll their states, read
each result JSON from its ``<flow>-result`` artifact, cancel a run mid-render, get a readable 4xx
naming the field for invalid parameters, run the batch deployment twice (the rerun renders nothing),
and screenshot a deployment's run form in headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = {"width_px": 320, "height_px": 180, "x264_preset": "superfast"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
FLOWS = ("img2vid", "caption", "addaudio", "batch")

pytestmark = pytest.mark.slow


@dataclass
class Served:
    """The running stack: API and UI URLs, where local renders go, the serve state folder."""

    api: str
    ui: str
    renders: Path
    state_dir: Path
    http: httpx.Client

    def deployment(self, flow: str) -> dict:
        """Step 1: find a deployment by ``<flow name>/<deployment name>``."""
        resp = self.http.get(f"/deployments/name/{flow}/{flow}")
        resp.raise_for_status()
        return resp.json()

    def create_run(self, flow: str, parameters: dict, *, idempotency_key: str | None = None) -> httpx.Response:
        """Step 2: ``POST /deployments/{id}/create_flow_run`` with a seed body as ``parameters``."""
        body: dict = {"parameters": parameters}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        return self.http.post(f"/deployments/{self.deployment(flow)['id']}/create_flow_run", json=body)

    def wait(self, flow_run_id: str, *, timeout_s: float = 120.0, until: set[str] = FINAL) -> dict:
        """Step 3: poll ``GET /flow_runs/{id}`` until its state type is in ``until``."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.http.get(f"/flow_runs/{flow_run_id}").json()
            if run["state"]["type"] in until:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {flow_run_id} still {run['state']['type']} after {timeout_s} s; "
                                     f"worker log tail:\n{tail(self.state_dir / 'worker.log')}")
            time.sleep(0.5)

    def result(self, flow_run_id: str, key: str) -> dict:
        """Step 4: the response JSON, from the run's markdown artifact ``key`` (``POST /artifacts/filter``)."""
        found = self.http.post("/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}}).json()
        assert len(found) == 1, found
        markdown = found[0]["data"]
        assert markdown.startswith("```json\n") and markdown.endswith("\n```")
        return json.loads(markdown[len("```json\n"):-len("\n```")])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``bash scripts/serve.sh`` in a private folder and port; ``serve.sh stop`` at the end."""
    root = tmp_path_factory.mktemp("served")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(API_GPU_SERVE_DIR=str(root / "serve"), API_GPU_PREFECT_PORT=str(free_port()), API_GPU_SKIP_SETUP="1",
               API_GPU_RENDERS_DIR=str(root / "renders"), PREFECT_WORKER_QUERY_SECONDS="1")
    started = time.monotonic()
    proc = subprocess.run(["bash", "scripts/serve.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    state_dir = root / "serve"
    try:
        assert proc.returncode == 0, f"serve.sh failed:\n{proc.stdout}\n{proc.stderr}\n{tail(state_dir / 'server.log')}"
        port = int((state_dir / "port").read_text())
        api = f"http://127.0.0.1:{port}/api"
        assert f"Prefect UI   http://127.0.0.1:{port}" in proc.stdout
        print(f"serve.sh start took {time.monotonic() - started:.1f} s")
        with httpx.Client(base_url=api, timeout=30) as client:
            yield Served(api=api, ui=api[: -len("/api")], renders=root / "renders", state_dir=state_dir, http=client)
    finally:
        stop = subprocess.run(["bash", "scripts/serve.sh", "stop"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not (state_dir / "server.pid").exists() and not (state_dir / "worker.pid").exists()


def test_one_deployment_per_flow_with_typed_enforced_parameters(served: Served):
    for flow in FLOWS:
        dep = served.deployment(flow)
        assert dep["work_pool_name"] == "api-gpu-process" and dep["enforce_parameter_schema"] is True
        assert dep["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert dep["entrypoint"] == f"flows/{flow}.py:{flow}"
    schema = served.deployment("img2vid")["parameter_openapi_schema"]
    assert schema["required"] == ["images", "path"]
    assert {"id", "image_url", "duration_s", "duracao"} <= set(schema["definitions"]["ImageInput"]["properties"])
    assert {"fps", "width_px", "height_px", "zoom_start", "zoom_end", "encoder", "crf"} <= set(
        schema["definitions"]["RenderSettings"]["properties"])
    caption = served.deployment("caption")["parameter_openapi_schema"]
    assert {"CaptionStyle", "CaptionSettings"} <= set(caption["definitions"])
    assert "AddAudioOptions" in served.deployment("addaudio")["parameter_openapi_schema"]["definitions"]
    batch = served.deployment("batch")
    assert batch["parameter_openapi_schema"]["required"] == ["manifest"]
    assert [(s["schedule"]["cron"], s["active"]) for s in batch["schedules"]] == [("0 3 * * *", False)]
    assert served.http.get("/work_pools/api-gpu-process").json()["type"] == "process"
    block_types = {b["slug"] for b in served.http.post("/block_types/filter", json={}).json()}
    assert "runpod-endpoint" in block_types


def test_each_operation_over_rest_returns_its_result(served: Served, media_dir: Path):
    photos, videos = media_dir / "photos", media_dir / "videos"
    bodies = {
        "img2vid": {"images": [{"id": "pier", "image_url": str(photos / "pier_1920x1080.jpg"), "duracao": 0.5},
                               {"id": "cups", "image_url": str(photos / "cups_2560x1600.jpg"), "duration_s": 0.75}],
                    "path": "REST/Ken Burns/videos/temp/", "settings": TINY},
        "caption": {"url_video": str(videos / "bikes_640x272_noaudio.mp4"),
                    "url_srt": str(media_dir / "subtitles" / "legendas_ptbr.srt"),
                    "path": "REST/Legendas/videos/", "output_filename": "video_legendado.mp4",
                    "settings": {"encoder": "libx264", "x264_preset": "superfast"}},
        "addaudio": {"url_video": str(videos / "bikes_640x272_noaudio.mp4"),
                     "url_audio": str(media_dir / "audio" / "narration_ptbr.mp3"),
                     "path": "REST/Narração/videos/", "output_filename": "video_com_audio.mp4"},
    }
    runs = {}
    for flow, body in bodies.items():
        resp = served.create_run(flow, body, idempotency_key=f"rest-{flow}-1")
        assert resp.status_code == 201, resp.text
        runs[flow] = resp.json()["id"]
        # The same idempotency key answers the same run: a retried POST does not render twice.
        again = served.create_run(flow, body, idempotency_key=f"rest-{flow}-1")
        assert again.status_code in (200, 201) and again.json()["id"] == runs[flow]
    for flow, run_id in runs.items():
        run = served.wait(run_id)
        assert run["state"]["type"] == "COMPLETED", (flow, run["state"], tail(served.state_dir / "worker.log"))
        result = served.result(run_id, f"{flow}-result")
        assert result["code"] == 200 and result["stats"]["jobId"] == run_id, result
        urls = [v["video_url"] for v in result["videos"]] if flow == "img2vid" else [result["video_url"]]
        for url in urls:
            path = Path(httpx.URL(url).path)
            assert url.startswith("file://") and served.renders in path.parents and path.stat().st_size > 1000
    assert served.result(runs["img2vid"], "img2vid-result")["message"] == "2 of 2 rendered"


def test_invalid_parameters_are_a_readable_4xx_naming_the_field(served: Served):
    good = {"images": [{"id": "a", "image_url": "examples/photos/leaf_1920x1080.jpg", "duracao": 1}], "path": "x/"}
    cases = [
        ("img2vid", {**good, "settings": {"width_px": 33}}, "settings.width_px", "not a multiple of 2"),
        ("img2vid", {**good, "images": [{"id": "a", "image_url": "a.jpg", "duracao": -1}]}, "images[0].duracao",
         "less than or equal to the minimum"),
        ("img2vid", {"path": "x/"}, "'images' is a required property", ""),
        ("caption", {"url_video": "v.mp4", "url_srt": "s.srt", "path": "p/", "output_filename": "o.mp4",
                     "style": {"font_size_pct": 50}}, "style.font_size_pct", "50"),
        ("addaudio", {"url_video": "v.mp4", "url_audio": "a.mp3", "path": "p/", "output_filename": "o.mp4",
                      "options": {"mode": "blend"}}, "options.mode", "blend"),
        ("batch", {"manifest": "m.jsonl", "max_concurrency": 0}, "max_concurrency", "minimum"),
    ]
    for flow, params, field, reason in cases:
        resp = served.create_run(flow, params)
        assert resp.status_code in (409, 422), (flow, resp.status_code, resp.text)
        detail = resp.json()["detail"]
        assert field in detail and reason in detail, (flow, detail)


def test_a_run_cancelled_mid_render_ends_cancelled(served: Served, slow_origin):
    # Each image download stalls 8 s, so the first render tasks are surely running when the cancel arrives.
    origin = slow_origin(delay_s=8.0, slow_hits=10)
    body = {"images": [{"id": f"slow-{n}", "image_url": origin.url(f"slow-{n}.jpg"), "duracao": 0.5} for n in range(4)],
            "path": "REST/cancelled/", "settings": TINY}
    run_id = served.create_run("img2vid", body).json()["id"]
    deadline = time.monotonic() + 90
    while not any((t.get("state") or {}).get("type") == "RUNNING" for t in served.http.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}).json()):
        assert time.monotonic() < deadline, tail(served.state_dir / "worker.log")
        time.sleep(0.3)
    # Step 5: cancel = propose CANCELLING; the worker stops the run's process and marks it CANCELLED.
    asked = time.monotonic()
    resp = served.http.post(f"/flow_runs/{run_id}/set_state",
                            json={"state": {"type": "CANCELLING", "message": "cancelled by the caller"}})
    assert resp.status_code == 201 and resp.json()["status"] == "ACCEPT", resp.text
    run = served.wait(run_id, timeout_s=60)
    print(f"cancelled {time.monotonic() - asked:.1f} s after the request")
    assert run["state"]["type"] == "CANCELLED", run["state"]
    delivered = sorted(p.name for p in (served.renders / "REST" / "cancelled").glob("*.mp4"))
    print("delivered before the cancel took effect:", delivered)
    assert "video_4.mp4" not in delivered


def test_batch_deployment_renders_a_manifest_once(served: Served, tmp_path: Path, media_dir: Path):
    photos = media_dir / "photos"
    requests = [
        {"operation": "img2vid", "request_id": f"clip-{n}",
         "body": {"images": [{"id": name, "image_url": str(photos / name), "duracao": 0.5}],
                  "path": f"REST/batch/clip-{n}/", "settings": TINY}}
        for n, name in enumerate(["leaf_1920x1080.jpg", "rocket_640x427.jpg"])
    ] + [{"operation": "addaudio", "request_id": "narrated",
          "body": {"url_video": str(media_dir / "videos" / "bikes_640x272_noaudio.mp4"),
                   "url_audio": str(media_dir / "audio" / "narration_ptbr.mp3"),
                   "path": "REST/batch/narrated/", "output_filename": "com_audio.mp4"}}]
    manifest = tmp_path / "rest-batch.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in requests), encoding="utf-8")
    summaries = []
    for attempt in range(2):
        resp = served.create_run("batch", {"manifest": str(manifest), "max_concurrency": 2})
        assert resp.status_code == 201, resp.text
        run = served.wait(resp.json()["id"], timeout_s=150)
        assert run["state"]["type"] == "COMPLETED", (run["state"], tail(served.state_dir / "worker.log"))
        summaries.append(served.result(run["id"], "batch-result"))
        children = served.http.post("/flow_runs/filter", json={
            "flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}}).json()
        assert len(children) == (3 if attempt == 0 else 0)
    assert summaries[0]["stats"]["rendered"] == 3 and summaries[1]["stats"]["skipped"] == 3
    assert (served.renders / "batches" / "rest-batch" / "batch-summary.json").is_file()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium not installed (scripts/setup.sh installs it with apt)")


def test_run_form_shows_the_typed_parameters(served: Served, tmp_path: Path):
    dep = served.deployment("img2vid")
    url = f"{served.ui}/deployments/deployment/{dep['id']}/run"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1400,1000", "--virtual-time-budget=15000"]
    png = tmp_path / "img2vid-run-form.png"
    shot = subprocess.run([_chromium(), *flags, f"--user-data-dir={tmp_path / 'profile-shot'}",
                           f"--screenshot={png}", url], capture_output=True, text=True, timeout=120)
    assert png.is_file(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, len(data)
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (1400, 1000)
        assert len(img.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # not a blank page
    print(f"run form screenshot: {png}")
    # The same page's rendered DOM holds the form's fields, named after the flow's parameters.
    dom = subprocess.run([_chromium(), *flags, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    for label in ("images", "path", "settings (Optional)", "storage (Optional)", "backend (Optional)"):
        assert f">{label}<" in dom or label in dom, label
