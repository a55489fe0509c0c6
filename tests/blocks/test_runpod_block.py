"""The RunPodEndpoint block, its HTTP client and the backend's pure helpers (chunking, error parsing),
against the fake control plane where HTTP is involved."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import SecretStr

from blocks.runpod import RunPodEndpoint
from blocks.runpod_api import RunPodClient, backoff_delay_s
from tasks.errors import JobFailedError, RunPodAPIError
from tasks.render_runpod import Chunk, job_error, plan_chunks
from tests.integration.fake_runpod import FakeRunPod, REPO_ROOT


@pytest.fixture()
def fake():
    server = FakeRunPod()
    try:
        yield server
    finally:
        server.close()


def _block(fake: FakeRunPod, **overrides) -> RunPodEndpoint:
    return RunPodEndpoint(endpoint_id=fake.endpoint_id, api_key=SecretStr(fake.api_key), base_url=fake.base_url,
                          poll_interval_s=0.05, poll_backoff_cap_s=0.3, **overrides)


def test_every_field_has_a_title_and_description_and_the_key_never_shows():
    for name, info in RunPodEndpoint.model_fields.items():
        assert info.title and info.description, name
    block = RunPodEndpoint(endpoint_id="abc", api_key=SecretStr("rpa_SECRET"))
    assert "rpa_SECRET" not in repr(block) and "rpa_SECRET" not in json.dumps(block.public_config())
    assert block.execution_timeout_s == 480 and block.max_concurrent_jobs == 3  # the seed's numbers
    assert block.base_url == "https://api.runpod.ai/v2"


def test_chunks_fit_the_timeout_budget_and_spread_over_the_workers():
    assert plan_chunks([1.0] * 60, budget_s=1000, min_chunks=3) == [tuple(range(0, 20)), tuple(range(20, 40)),
                                                                    tuple(range(40, 60))]
    block = RunPodEndpoint(endpoint_id="e", api_key=SecretStr("k"))  # 480 s x 0.5 budget, 0.06 s/frame + 2 s
    estimates = [block.estimate_s(24 * 60)] * 10  # ten one-minute clips at 24 fps: 88.4 s each
    chunks = plan_chunks(estimates, budget_s=block.chunk_budget_s(), min_chunks=3)
    assert [len(c) for c in chunks] == [2, 2, 2, 2, 2]
    assert all(sum(estimates[i] for i in c) <= block.chunk_budget_s() for c in chunks)
    assert plan_chunks([500.0, 1.0], budget_s=240, min_chunks=1) == [(0,), (1,)]  # an oversize clip goes alone
    assert [c.indices for c in Chunk((0, 1, 2)).halves()] == [(0,), (1, 2)]
    assert Chunk((4,), 2).key != Chunk((4,), 3).key


def test_failed_job_errors_keep_the_workers_retryable_flag():
    structured = {"type": "InputError", "message": "clips: too short", "retryable": False, "field": "clips"}
    err = job_error("j1", {"status": "FAILED", "error": json.dumps(structured)})
    assert isinstance(err, JobFailedError) and not err.retryable and err.error_type == "InputError"
    crash = {"error_type": "<class 'MemoryError'>", "error_message": "out of memory", "error_traceback": "..."}
    err = job_error("j2", {"status": "FAILED", "error": json.dumps(crash)})
    assert err.retryable and "out of memory" in str(err)
    assert job_error("j3", {"status": "FAILED"}).retryable


def test_backoff_is_jittered_and_capped():
    assert backoff_delay_s(0, base_s=1, cap_s=10, rng=lambda: 0.0) == 0.5
    assert backoff_delay_s(0, base_s=1, cap_s=10, rng=lambda: 0.999) == pytest.approx(1.0, abs=1e-3)
    assert backoff_delay_s(20, base_s=1, cap_s=10, rng=lambda: 0.999) <= 10


def test_client_retries_429_and_5xx_and_refuses_a_bad_key(fake):
    fake.run_429, fake.status_503 = 2, 2
    slept: list[float] = []
    client = RunPodClient(base_url=fake.base_url, endpoint_id=fake.endpoint_id, api_key=fake.api_key,
                          max_retries=3, backoff_base_s=0.01, backoff_cap_s=1.0, sleep=slept.append)
    job_id = client.run({"operation": "img2vid"}, execution_timeout_s=480, ttl_s=3600)
    assert fake.jobs[job_id].execution_timeout_s == 480 and fake.jobs[job_id].ttl_s == 3600
    assert client.status(job_id)["status"] == "IN_QUEUE"
    assert fake.counts["run_429"] == 2 and fake.counts["status_503"] == 2 and len(slept) == 4
    assert min(slept[:2]) >= 0.2  # honoured the fake's Retry-After: 0.2
    with pytest.raises(RunPodAPIError) as info:
        client.status("no-such-job")
    assert info.value.status_code == 404 and not info.value.retryable
    bad = RunPodClient(base_url=fake.base_url, endpoint_id=fake.endpoint_id, api_key="wrong", sleep=slept.append)
    with pytest.raises(RunPodAPIError) as info:
        bad.health()
    assert info.value.status_code == 401 and "wrong" not in str(info.value)
    assert client.cancel(job_id)["status"] == "CANCELLED"


@pytest.mark.usefixtures("prefect_harness")
def test_health_and_config_commands(fake, tmp_path):
    from prefect.settings import PREFECT_API_URL

    _block(fake).save("cli-test", overwrite=True)
    env = {"PATH": "/usr/bin:/bin", "PREFECT_API_URL": PREFECT_API_URL.value(), "HOME": str(tmp_path)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "blocks.runpod", *args], cwd=REPO_ROOT, env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    health = run("health", "cli-test")
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["jobs"] == {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0}
    config = run("config", "cli-test")
    assert config.returncode == 0, config.stderr
    shown = json.loads(config.stdout)
    assert shown["endpoint_id"] == fake.endpoint_id and shown["api_key"] == "**********"
    assert fake.api_key not in config.stdout
    assert run("status", "cli-test").returncode == 2
