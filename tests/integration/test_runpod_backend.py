"""The RunPod backend end to end: the img2vid flow -> fake RunPod control plane -> real worker processes
(our handler under the runpod SDK's production loop) -> files on disk, verified by the flow."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.img2vid import img2vid
from tests.integration.conftest import CLIP_S, TINY

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "state_dir")]


def test_sixty_images_over_three_workers(fake_runpod, start_workers, runpod_block, images, renders_dir: Path):
    pool = start_workers(3)
    block = runpod_block(max_concurrent_jobs=3)
    body = {"images": images(60), "path": "Proj/Sixty/videos/temp/"}
    started = time.perf_counter()
    state = img2vid(**body, settings=TINY, backend=block, return_state=True)
    elapsed_s = time.perf_counter() - started
    assert state.is_completed(), state.message
    result = state.result()
    assert result["code"] == 200 and result["message"] == "60 of 60 rendered"
    assert [v["id"] for v in result["videos"]] == [f"img-{n}" for n in range(60)]
    assert [v["filename"] for v in result["videos"]] == [f"video_{n}.mp4" for n in range(1, 61)]
    folder = renders_dir / "Proj" / "Sixty" / "videos" / "temp"
    for video in result["videos"]:
        path = folder / video["filename"]
        assert path.stat().st_size == video["size_bytes"] > 0
        assert video["frames"] == round(CLIP_S * 24) and (video["width"], video["height"]) == (160, 90)
    # 3 jobs of 20 clips, one per worker, each finished exactly once
    jobs = list(fake_runpod.jobs.values())
    assert fake_runpod.counts["run"] == 3 and len(jobs) == 3
    assert sorted(len(j.input["clips"]) for j in jobs) == [20, 20, 20]
    assert all(j.status == "COMPLETED" and j.done_posts == 1 for j in jobs)
    assert {j.worker for j in jobs} == set(pool.procs)
    assert fake_runpod.counts["progress"] > 0  # progress_update reached the platform
    print(f"\n60 clips over 3 workers: {elapsed_s:.1f} s; status polls: {fake_runpod.counts['status']}")
