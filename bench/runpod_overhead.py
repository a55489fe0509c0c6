"""Orchestration overhead of the RunPod backend: what Prefect plus submission and polling cost per image,
on top of the render itself, for a 50-image batch of trivial renders.

Usage::

    .venv/bin/python bench/runpod_overhead.py [--images 50] [--poll-interval-s 1.0] [--poll-cap-s 10]

Everything runs on this machine: Prefect's temporary server (its test harness), the fake RunPod control
plane of ``tests/integration/fake_runpod.py`` and real worker processes (``worker_image/handler.py``
under the runpod SDK's production loop). Renders are trivial (160x90, 0.5 s, 12 frames per clip).

Rows, in one run:

* ``engine``: the baseline. The 50 clips rendered in-process, one after another, with the engine alone
  (``render_clip``): the render itself.
* ``local``: the img2vid flow with the local backend (Prefect tasks, one thread per CPU): for scale; it
  renders in parallel, so it has no serial render span to subtract.
* ``runpod x1``: the flow with the RunPod backend and one worker (all clips in one job; render serial,
  like the baseline): Prefect + submit + queue + polling + result checks.
* ``runpod x3``: three workers, three jobs (the default fan-out).

For each: wall time, and ``overhead = wall - render`` where ``render`` is the span during which a
worker was executing a job (the fake's take -> done timestamps) or, for ``engine``/``local``, the
baseline's render time. Ratios are against the ``engine`` baseline. The fake's counters say how many
``/status`` polls that cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TINY = {"fps": 24, "width_px": 160, "height_px": 90, "encoder": "libx264", "x264_preset": "veryfast"}


def _images(origin, count: int) -> list[dict]:
    from tests.integration.conftest import jpeg_bytes

    return [{"id": f"img-{n}", "image_url": origin.add(f"/img-{n}.jpg", jpeg_bytes(n), content_type="image/jpeg"),
             "duration_s": 0.5} for n in range(count)]


def bench_engine(images: list[dict], out_dir: Path) -> float:
    """Render every clip in-process with the engine alone; returns wall seconds."""
    from worker_image.contract import ClipJob, FileOutput, RenderSettings
    from worker_image.engine import render_clip

    settings = RenderSettings(**TINY)
    started = time.perf_counter()
    for n, image in enumerate(images, start=1):
        clip = ClipJob(id=image["id"], image_url=image["image_url"], duration_s=image["duration_s"],
                       filename=f"video_{n}.mp4", output=FileOutput(path=str(out_dir / f"video_{n}.mp4")))
        render_clip(clip, settings)
    return time.perf_counter() - started


def bench_flow(images: list[dict], *, backend: str, path: str) -> float:
    """Run the img2vid flow; returns wall seconds (raises when it did not render everything)."""
    from flows.img2vid import img2vid

    started = time.perf_counter()
    state = img2vid(images=images, path=path, settings=TINY, backend=backend, return_state=True)
    wall = time.perf_counter() - started
    if not state.is_completed():
        raise RuntimeError(f"{backend}: {state.message}")
    return wall


def bench_runpod(images: list[dict], *, workers: int, args: argparse.Namespace, tmp: Path) -> dict:
    """The flow through the fake control plane with ``workers`` worker processes."""
    from pydantic import SecretStr

    from blocks.runpod import RunPodEndpoint
    from tests.integration.fake_runpod import FakeRunPod, WorkerPool

    fake = FakeRunPod()
    pool = WorkerPool(fake, workers, tmp / f"workers-{workers}")
    try:
        pool.wait_ready()
        name = f"bench-{uuid.uuid4().hex[:8]}"
        RunPodEndpoint(endpoint_id=fake.endpoint_id, api_key=SecretStr(fake.api_key), base_url=fake.base_url,
                       max_concurrent_jobs=workers, poll_interval_s=args.poll_interval_s,
                       poll_backoff_cap_s=args.poll_cap_s, workers_share_filesystem=True).save(name, overwrite=True)
        wall = bench_flow(images, backend=name, path=f"bench/runpod{workers}/")
        jobs = list(fake.jobs.values())
        render = max(j.finished_at for j in jobs) - min(j.started_at for j in jobs)
        return {"wall_s": wall, "render_s": render, "jobs": len(jobs), "status_polls": fake.counts["status"],
                "queue_s": max(j.started_at - j.created_at for j in jobs)}
    finally:
        pool.close()
        fake.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--poll-interval-s", type=float, default=1.0, help="block poll_interval_s (default: the block's)")
    parser.add_argument("--poll-cap-s", type=float, default=10.0, help="block poll_backoff_cap_s (default: the block's)")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from tests.conftest import Origin

    with tempfile.TemporaryDirectory(prefix="runpod-bench-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["API_GPU_RENDERS_DIR"] = str(tmp / "renders")
        os.environ["API_GPU_STATE_DIR"] = str(tmp / "state")
        origin = Origin()
        try:
            images = _images(origin, args.images)
            (tmp / "engine").mkdir()
            bench_engine(images[:2], tmp / "engine")  # warm-up: imports, NVENC probe
            baseline = bench_engine(images, tmp / "engine")
            rows = {"engine": {"wall_s": baseline, "render_s": baseline}}
            with prefect_test_harness(server_startup_timeout=120):
                # local renders in parallel threads: its render span is not the serial baseline; no overhead column
                rows["local"] = {"wall_s": bench_flow(images, backend="local", path="bench/local/"), "render_s": None}
                rows["runpod x1"] = bench_runpod(images, workers=1, args=args, tmp=tmp)
                rows["runpod x3"] = bench_runpod(images, workers=3, args=args, tmp=tmp)
        finally:
            origin.close()

    n = args.images
    print(f"\n{n} images, 160x90 x 12 frames each; poll interval {args.poll_interval_s} s, cap {args.poll_cap_s} s; "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'row':<11} {'wall s':>8} {'render s':>9} {'overhead s':>11} {'per image ms':>13} {'wall/engine':>12} "
          f"{'polls':>6} {'jobs':>5}")
    for name, row in rows.items():
        if row["render_s"] is None:
            print(f"{name:<11} {row['wall_s']:8.2f} {'-':>9} {'-':>11} {'-':>13} {row['wall_s'] / baseline:12.2f}")
            continue
        overhead = row["wall_s"] - row["render_s"]
        row["overhead_per_image_ms"] = 1000 * overhead / n
        print(f"{name:<11} {row['wall_s']:8.2f} {row['render_s']:9.2f} {overhead:11.2f} "
              f"{row['overhead_per_image_ms']:13.1f} {row['wall_s'] / baseline:12.2f} "
              f"{row.get('status_polls', ''):>6} {row.get('jobs', ''):>5}")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "runpod_overhead.json").write_text(json.dumps({"images": n, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
