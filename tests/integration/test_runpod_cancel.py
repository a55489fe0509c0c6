"""Cancelling an img2vid flow run cancels its RunPod jobs.

The flow is served by a real Prefect runner in a subprocess, as in production. When the
flow run is set Cancelling through the API, the runner kills the flow's process and runs the flow's
``on_cancellation`` hook in *its own* process; the hook finds the job ids in the job-state file and cancels
each one on the fake control plane, which signals the workers to stop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling

from tests.integration.conftest import TINY
from tests.integration.fake_runpod import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _serve(tmp_path: Path, state_dir: Path, renders_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "API_GPU_STATE_DIR": str(state_dir), "API_GPU_RENDERS_DIR": str(renders_dir)}
    log = open(tmp_path / "runner.log", "wb")
    # A runner serving a deployment by entrypoint, as `prefect deploy` + a worker would run it. (Not
    # `img2vid.serve()`: Prefect 3.9 then ships the flow by value to a spawned process, where the
    # `from __future__ import annotations` parameter types no longer resolve.)
    code = ("import asyncio; from prefect.deployments.runner import RunnerDeployment; from prefect.runner import Runner; "
            "runner = Runner(query_seconds=1); "
            "runner.add_deployment(RunnerDeployment.from_entrypoint('flows/img2vid.py:img2vid', name='cancel-test')); "
            "asyncio.run(runner.start())")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


async def _wait_deployment(name: str, timeout_s: float = 60.0):
    async with get_client() as client:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                return await client.read_deployment_by_name(name)
            except Exception:
                await asyncio.sleep(0.5)
    raise TimeoutError(f"deployment {name} did not appear")


def test_cancelling_the_flow_run_cancels_its_runpod_jobs(fake_runpod, start_workers, runpod_block, slow_origin,
                                                         state_dir, renders_dir, tmp_path):
    import signal

    from prefect.deployments import run_deployment

    pool = start_workers(2)
    slow = slow_origin(delay_s=20.0, slow_hits=1)  # every job is busy (stalled on its first input) for 20 s
    block = runpod_block(max_concurrent_jobs=3)
    batch = [{"id": f"img-{n}", "image_url": slow.url(f"img-{n}.jpg"), "duration_s": 0.5} for n in range(6)]
    runner = _serve(tmp_path, state_dir, renders_dir)
    try:
        deployment = asyncio.run(_wait_deployment("img2vid/cancel-test"))
        flow_run = run_deployment(deployment.id, parameters={"images": batch, "path": "Proj/Cancel/",
                                                             "settings": TINY, "backend": block}, timeout=0)
        # 3 jobs submitted, 2 running (2 workers), 1 queued
        assert fake_runpod.wait_for(lambda f: len(f.jobs) == 3 and sum(
            j.status == "IN_PROGRESS" for j in f.jobs.values()) == 2, 90), (tmp_path / "runner.log").read_text()

        async def cancel_and_wait():
            async with get_client() as client:
                await client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
                deadline = time.time() + 60
                while time.time() < deadline:
                    run = await client.read_flow_run(flow_run.id)
                    if run.state.is_final():
                        return run.state
                    await asyncio.sleep(0.5)
            return run.state

        cancelled_at = time.time()
        final_state = asyncio.run(cancel_and_wait())
        assert fake_runpod.wait_for(lambda f: all(j.status == "CANCELLED" for j in f.jobs.values()), 30), \
            ([(j.id, j.status) for j in fake_runpod.jobs.values()], (tmp_path / "runner.log").read_text()[-3000:])
        assert final_state.is_cancelled(), final_state
        assert sorted(fake_runpod.cancelled_ids) == sorted(fake_runpod.jobs)
        assert fake_runpod.counts["stop_signals"] == 2  # the two running jobs were signalled to their workers
        # the workers dropped the stopped jobs and went back to polling for work
        assert fake_runpod.wait_for(lambda f: f.health()["workers"] == {"idle": 2, "running": 0}, 10)
        time.sleep(2)
        assert fake_runpod.counts["done"] == 0 and all(j.done_posts == 0 for j in fake_runpod.jobs.values())
        for worker in pool.procs:
            assert pool.alive(worker)
        cancels = [t for t, _, what in fake_runpod.events if what == "CANCELLED"]
        print(f"\ncancel requested -> flow run {final_state.name} and {len(cancels)} jobs CANCELLED on the fake "
              f"{min(cancels) - cancelled_at:.1f}..{max(cancels) - cancelled_at:.1f} s later")
    finally:
        try:
            os.killpg(runner.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            runner.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(5)
