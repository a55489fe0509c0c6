"""A small client for RunPod Serverless' documented HTTP API (``/v2/{endpoint_id}/...``).

Calls: ``POST /run`` (queue a job), ``GET /status/{job_id}``, ``POST /cancel/{job_id}``,
``GET /health``, ``POST /purge-queue``. Authentication is ``Authorization: Bearer <api key>``.

Why httpx and not the runpod SDK's ``runpod.Endpoint``: the SDK reads the base URL from the process
global ``runpod.endpoint_url_base`` when a client is built, so two endpoints with different base
URLs (RunPod and a test control plane) cannot be used safely from threads; it retries 408/429 only
on ``http://`` (its retry adapter is not mounted for ``https://``) and never 5xx; and it raises bare
``requests`` errors. This client speaks the same API with per-instance base URLs, retries 429 (honouring
``Retry-After``) and 5xx with jittered exponential backoff, and raises
:class:`tasks.errors.RunPodAPIError` carrying the status and whether another try may help.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from tasks.errors import RunPodAPIError

log = logging.getLogger(__name__)

#: Statuses worth asking again: request timeout, rate limit (RunPod answers 429 when an endpoint's
#: request rate or queue limit is hit) and server errors.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

#: Job statuses RunPod reports (RunPod docs, "Job status"); the last four are final.
ACTIVE_STATUSES = frozenset({"IN_QUEUE", "IN_PROGRESS"})
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


def backoff_delay_s(attempt: int, *, base_s: float, cap_s: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter": half the step is fixed, half random.

    Args:
        attempt: 0 for the first wait, 1 for the second, ...
        base_s: The first step, seconds.
        cap_s: No step exceeds this, seconds.
        rng: A source of floats in [0, 1) (injectable for tests).

    Returns:
        A delay in ``[step/2, step]`` seconds where ``step = min(cap_s, base_s * 2**attempt)``.
    """
    step = min(cap_s, base_s * (2 ** min(attempt, 30)))
    return step / 2 + rng() * step / 2


class RunPodClient:
    """Synchronous client for one RunPod Serverless endpoint (thread-safe: one httpx.Client).

    Args:
        base_url: API root, e.g. ``https://api.runpod.ai/v2`` (no trailing slash needed).
        endpoint_id: The endpoint's id.
        api_key: The RunPod API key (plain text; the caller unwraps its SecretStr only here).
        request_timeout_s: Per-request timeout, seconds.
        max_retries: Retries of one call after a 408/429/5xx answer or a transport error.
        backoff_base_s: First retry delay, seconds. backoff_cap_s: Longest retry delay, seconds.
        sleep: Injectable for tests.
    """

    def __init__(
        self,
        *,
        base_url: str,
        endpoint_id: str,
        api_key: str,
        request_timeout_s: float = 10.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint_id = endpoint_id
        self._root = f"{base_url.rstrip('/')}/{endpoint_id}"
        self._http = httpx.Client(
            timeout=request_timeout_s,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        self.max_retries, self.backoff_base_s, self.backoff_cap_s = max_retries, backoff_base_s, backoff_cap_s
        self._sleep = sleep

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "RunPodClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, json_body: Any = None, retry: bool = True) -> Any:
        what = f"{method} /{self.endpoint_id}/{path.split('/')[0]}"
        attempt = 0
        while True:
            try:
                resp = self._http.request(method, f"{self._root}/{path}", json=json_body)
            except httpx.TransportError as exc:
                err = RunPodAPIError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)
                retry_after = None
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError:
                        raise RunPodAPIError(f"{what}: answer is not JSON (HTTP {resp.status_code})",
                                             status_code=resp.status_code, retryable=True) from None
                retryable = resp.status_code in RETRYABLE_STATUS
                err = RunPodAPIError(f"{what}: HTTP {resp.status_code} {resp.text[:200]!r}",
                                     status_code=resp.status_code, retryable=retryable)
                retry_after = _retry_after_s(resp)
            if not (retry and err.retryable and attempt < self.max_retries):
                raise err
            delay = backoff_delay_s(attempt, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
            if retry_after is not None:
                delay = min(max(delay, retry_after), self.backoff_cap_s)
            log.info("%s; retry %d/%d in %.2f s", err, attempt + 1, self.max_retries, delay)
            self._sleep(delay)
            attempt += 1

    def run(self, job_input: dict[str, Any], *, execution_timeout_s: float, ttl_s: float) -> str:
        """Queue a job and return its id (``POST /run``).

        Args:
            job_input: The handler's ``input`` (a job contract dict; no credentials).
            execution_timeout_s: RunPod stops the job (TIMED_OUT) after this long running, seconds;
                sent as ``policy.executionTimeout`` in milliseconds (RunPod docs, "Execution policies").
            ttl_s: The job's whole life, queue included, seconds (``policy.ttl``, ms).

        A 429 is safe to retry (the job was refused). A 5xx or a lost connection is ambiguous: the job may
        have been queued. It is retried anyway (RunPod's API takes no idempotency key), so in that rare case
        one chunk renders twice; outputs are written to the same keys atomically, so the result is the same.

        Raises:
            RunPodAPIError: after retries, or at once for a non-retryable answer (401, 404, 400).
        """
        body = {"input": job_input,
                "policy": {"executionTimeout": int(execution_timeout_s * 1000), "ttl": int(ttl_s * 1000)}}
        answer = self._call("POST", "run", json_body=body)
        job_id = answer.get("id") if isinstance(answer, dict) else None
        if not job_id:
            raise RunPodAPIError(f"POST /{self.endpoint_id}/run: answer has no job id", retryable=False)
        return str(job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status object: ``{id, status, output?, error?, delayTime?, executionTime?}``.

        Raises:
            RunPodAPIError: 404 (unknown or expired job; ``retryable`` False) or retries exhausted.
        """
        return self._call("GET", f"status/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (``POST /cancel/{job_id}``); returns ``{id, status}``."""
        return self._call("POST", f"cancel/{job_id}")

    def health(self) -> dict[str, Any]:
        """Job and worker counts: ``{"jobs": {completed, failed, inProgress, inQueue, retried},
        "workers": {idle, running, ...}}`` (RunPod docs, ``GET /health``)."""
        return self._call("GET", "health")

    def purge_queue(self) -> dict[str, Any]:
        """Drop every queued (not running) job of the endpoint; returns ``{removed, status}``."""
        return self._call("POST", "purge-queue")


def _retry_after_s(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
