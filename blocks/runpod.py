"""``RunPodEndpoint``: a Prefect Block describing one RunPod Serverless endpoint and how we use it.

Save one (the name is what a flow's ``backend`` parameter takes)::

    from pydantic import SecretStr
    from blocks.runpod import RunPodEndpoint
    RunPodEndpoint(endpoint_id="abc123", api_key=SecretStr("rpa_...")).save("render-gpu")

Health and configuration (the seed's ``GET /runpod/health`` and ``GET /runpod/config``)::

    python -m blocks.runpod health render-gpu     # job and worker counts, as RunPod reports them
    python -m blocks.runpod config render-gpu     # this block's settings, the API key masked
"""

from __future__ import annotations

import json
import sys
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from .runpod_api import RunPodClient

#: RunPod's documented v2 API root.
RUNPOD_API_BASE_URL = "https://api.runpod.ai/v2"


class RunPodEndpoint(Block):
    """A RunPod Serverless endpoint running ``worker_image`` (its handler and Dockerfile).

    Defaults come from the seed API (``execution_timeout_s`` 480, ``max_concurrent_jobs`` 3), RunPod's
    documentation (base URL, statuses, ``policy`` fields) and measurement (``frame_cost_s``).
    """

    _block_type_name = "RunPod Endpoint"
    _description = "A RunPod Serverless endpoint that renders api-gpu jobs (worker_image)."

    endpoint_id: str = Field(..., title="Endpoint ID", description="The RunPod Serverless endpoint id (from the console URL).")
    api_key: SecretStr = Field(..., title="API key", description="RunPod API key with access to the endpoint. Never logged.")
    base_url: str = Field(
        RUNPOD_API_BASE_URL,
        title="API base URL",
        description="Root of RunPod's serverless HTTP API (RunPod docs: https://api.runpod.ai/v2). Tests point it at a local control plane.",
    )
    execution_timeout_s: float = Field(
        480.0, gt=0, le=7 * 24 * 3600, title="Execution timeout (s)",
        description="RunPod stops a job that runs longer than this (status TIMED_OUT); sent as policy.executionTimeout. Seed: 480 s.",
    )
    ttl_s: float = Field(
        3600.0, gt=0, le=7 * 24 * 3600, title="Job TTL (s)",
        description="A job's whole life, queue included (policy.ttl; RunPod's default is 24 h). We also stop polling after "
        "ttl_s + execution_timeout_s. One hour: a render that waited longer is better failed than delivered late.",
    )
    max_concurrent_jobs: int = Field(
        3, ge=1, le=100, title="Max concurrent jobs",
        description="Jobs of one flow run in flight at once (the seed split large batches over 3 workers). Match the endpoint's max workers.",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, le=60, title="First poll interval (s)",
        description="First wait between /status polls; later waits double (with jitter) up to poll_backoff_cap_s.",
    )
    poll_backoff_cap_s: float = Field(
        10.0, gt=0, le=300, title="Poll backoff cap (s)",
        description="Longest wait between two /status polls, and between two retries of a failed API call. It bounds how late "
        "a finished job is noticed: bench/runpod_overhead.py measured 4.8 s of overhead on a 7 s job with 10 s, 1.2 s with 2 s.",
    )
    frame_cost_s: float = Field(
        0.06, gt=0, le=60, title="Render cost per frame (s)",
        description="Estimated render seconds per output frame, for chunk sizing. 0.054 s was measured for 1920x1080 libx264 "
        "'medium' on a 2-core CPU host (a GPU worker is faster, so this is conservative); re-measure for your workers.",
    )
    clip_overhead_s: float = Field(
        2.0, ge=0, le=600, title="Overhead per clip (s)",
        description="Fixed seconds per clip on top of frames x frame_cost_s: download, decode, ffprobe verification, upload.",
    )
    timeout_margin: float = Field(
        0.5, gt=0, le=1, title="Timeout margin",
        description="A chunk's estimated render time may use at most this fraction of execution_timeout_s (0.5: 2x headroom "
        "for cold starts and slow inputs).",
    )
    max_attempts: int = Field(
        3, ge=1, le=10, title="Attempts per clip",
        description="Jobs a clip may be part of: a TIMED_OUT or transiently FAILED job is resubmitted (split smaller) until then.",
    )
    api_retries: int = Field(
        5, ge=0, le=20, title="API retries",
        description="Retries of one HTTP call after 429, 5xx or a network error, with jittered exponential backoff.",
    )
    request_timeout_s: float = Field(10.0, gt=0, le=300, title="Request timeout (s)", description="Timeout of one HTTP call to the API.")
    workers_share_filesystem: bool = Field(
        False, title="Workers share this filesystem",
        description="Only for workers on this machine (tests, a local GPU box): allows the 'local' storage, whose outputs are "
        "file paths. Real RunPod workers cannot write here: use an S3 storage block (presigned PUT).",
    )

    def client(self) -> RunPodClient:
        """An HTTP client for this endpoint. The one place the API key is unwrapped."""
        return RunPodClient(
            base_url=self.base_url,
            endpoint_id=self.endpoint_id,
            api_key=self.api_key.get_secret_value(),
            request_timeout_s=self.request_timeout_s,
            max_retries=self.api_retries,
            backoff_base_s=min(self.poll_interval_s, self.poll_backoff_cap_s),
            backoff_cap_s=self.poll_backoff_cap_s,
        )

    def chunk_budget_s(self) -> float:
        """Estimated render seconds one job may hold: ``execution_timeout_s x timeout_margin``."""
        return self.execution_timeout_s * self.timeout_margin

    def estimate_s(self, frames: int) -> float:
        """Estimated render seconds of one clip of ``frames`` frames."""
        return frames * self.frame_cost_s + self.clip_overhead_s

    def poll_deadline_s(self) -> float:
        """Seconds after submission after which we stop waiting for a job: ``ttl_s + execution_timeout_s``."""
        return self.ttl_s + self.execution_timeout_s

    def public_config(self) -> dict[str, Any]:
        """Every setting except the API key (shown masked), JSON-ready."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["api_key"] = "**********"
        return {k: v for k, v in data.items() if not k.startswith("_") and k != "block_type_slug"}


def _usage() -> int:
    print("usage: python -m blocks.runpod {health|config} BLOCK_NAME", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """``python -m blocks.runpod health|config BLOCK``: print the endpoint's health or its configuration
    as JSON. Exit status 0, or 1 when the API cannot be reached."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2 or args[0] not in ("health", "config"):
        return _usage()
    command, name = args
    endpoint = RunPodEndpoint.load(name)
    if command == "config":
        print(json.dumps(endpoint.public_config(), indent=2))
        return 0
    from tasks.errors import RunPodAPIError

    try:
        with endpoint.client() as client:
            health = client.health()
    except RunPodAPIError as exc:
        print(f"health of {endpoint.endpoint_id}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"endpoint_id": endpoint.endpoint_id, **health}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
