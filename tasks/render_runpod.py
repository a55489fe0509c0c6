"""The RunPod Serverless render backend: clips go out in chunks, one RunPod job per chunk.

Fan-out. Clips are packed, in request order, into chunks whose estimated render time
(``frames x frame_cost_s + clip_overhead_s`` per clip, see ``RunPodEndpoint``) stays within
``execution_timeout_s x timeout_margin``, and into at least ``max_concurrent_jobs`` chunks so every
worker gets work. At most ``max_concurrent_jobs`` jobs are in flight; each is one Prefect task
(:func:`run_runpod_job`) that submits, records the job id, and polls. (This replaces the seed's
"more than 50 images -> 3 workers" rule.)

Failure policy, per job status:

* COMPLETED: per-clip results; a clip whose error is retryable is resubmitted (new job) until
  ``max_attempts``; other clip errors are final for that clip only.
* FAILED with a structured, non-retryable error (bad input): final for its clips, never resubmitted.
  FAILED otherwise (worker crash, transient error): resubmitted until ``max_attempts``.
* TIMED_OUT (or our own deadline passed): resubmitted split in halves until ``max_attempts``.
* CANCELLED (by someone else): final for its clips.
* API trouble (429, 5xx, network): retried inside each call with jittered backoff; when that is
  exhausted, the Prefect task retries (2, 5, 15 s) and **resumes polling the job it recorded** in
  ``tasks.runpod_jobs.JobStore`` instead of submitting a duplicate.

Outputs. RunPod workers cannot reach this machine's disk: use an S3 storage (presigned PUT,
``PutUrlOutput``). A ``FileOutput`` (the ``local`` storage) is refused unless the block says
``workers_share_filesystem`` (workers on this machine: tests, a local GPU box).

Caption and addaudio jobs (one output each) go out as one RunPod job each, with the same status handling.

``on_done(index, result | exception)`` is called once per job, from the calling (flow) thread.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.runpod import RunPodEndpoint
from blocks.runpod_api import ACTIVE_STATUSES, FINAL_STATUSES, RunPodClient, backoff_delay_s
from worker_image.contract import (
    AddAudioJob,
    AddAudioResult,
    CaptionJob,
    CaptionResult,
    ClipJob,
    ClipResult,
    FileOutput,
    Img2VidJob,
    RenderSettings,
)
from worker_image.errors import error_from_payload

from .backends import OnDone
from .errors import (
    JobAbandonedError,
    JobCancelledError,
    JobFailedError,
    JobTimedOutError,
    RequestError,
    RunPodAPIError,
)
from .retry import RETRY_DELAYS_S, is_transient
from .runpod_jobs import JobStore

#: The result model of each job kind, and how a result element names its job (addaudio jobs have no id).
RESULT_MODELS: dict[type, tuple[type, str]] = {
    ClipJob: (ClipResult, "id"),
    CaptionJob: (CaptionResult, "id"),
    AddAudioJob: (AddAudioResult, "filename"),
}

#: One event per flow run being rendered by this process: set when the flow thread is interrupted
#: (cancellation, shutdown), so polling threads stop at once instead of holding the process open.
_STOP_EVENTS: dict[str, threading.Event] = {}


@dataclass(frozen=True)
class Chunk:
    """Clips (indices into the flow's job list, in order) sent as one RunPod job, and which attempt it is."""

    indices: tuple[int, ...]
    attempt: int = 1

    @property
    def key(self) -> str:
        """Stable name within a flow run, e.g. ``a1-000-019-3f2a9c``: attempt, first and last index,
        and a digest of all indices (retried subsets need not be contiguous)."""
        digest = hashlib.sha1(",".join(map(str, self.indices)).encode()).hexdigest()[:6]
        return f"a{self.attempt}-{self.indices[0]:03d}-{self.indices[-1]:03d}-{digest}"

    def halves(self) -> list["Chunk"]:
        """The next attempt, split in two (one chunk when only one clip is left)."""
        if len(self.indices) == 1:
            return [Chunk(self.indices, self.attempt + 1)]
        mid = len(self.indices) // 2
        return [Chunk(self.indices[:mid], self.attempt + 1), Chunk(self.indices[mid:], self.attempt + 1)]


def plan_chunks(estimates_s: Sequence[float], *, budget_s: float, min_chunks: int) -> list[tuple[int, ...]]:
    """Pack clips, in order, into chunks.

    Args:
        estimates_s: Estimated render seconds of each clip.
        budget_s: Most estimated seconds per chunk (a single clip over budget gets a chunk alone).
        min_chunks: Spread over at least this many chunks when there are enough clips (the number of
            jobs that may run at once), so no worker idles while another has a long chunk.

    Returns:
        Index tuples covering ``range(len(estimates_s))`` in order.

    Example:
        >>> plan_chunks([1.0] * 7, budget_s=100, min_chunks=3)
        [(0, 1, 2), (3, 4, 5), (6,)]
    """
    max_clips = max(1, math.ceil(len(estimates_s) / max(1, min_chunks)))
    chunks: list[tuple[int, ...]] = []
    current: list[int] = []
    total = 0.0
    for index, estimate in enumerate(estimates_s):
        if current and (len(current) >= max_clips or total + estimate > budget_s):
            chunks.append(tuple(current))
            current, total = [], 0.0
        current.append(index)
        total += estimate
    if current:
        chunks.append(tuple(current))
    return chunks


def is_transient_api_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn`` for :func:`run_runpod_job`: retry only API/network trouble.

    A job that ended badly (FAILED, TIMED_OUT, CANCELLED) is not retried by Prefect: resubmitting is a
    new job with a new chunk key, decided by the backend. API errors say whether they are retryable.
    """
    try:
        state.result()
    except JobFailedError:
        return False
    except RunPodAPIError as err:
        return err.retryable
    except BaseException:
        return is_transient(task, task_run, state)
    return False


def job_error(job_id: str, status: dict[str, Any]) -> JobFailedError:
    """The exception for a FAILED job, from its ``error`` field.

    The handler's structured ``{"type", "message", "retryable"}`` (possibly JSON-encoded by the
    platform) keeps its ``retryable``; anything else (the SDK's traceback report of a crashed handler,
    a plain string, nothing) is treated as transient.
    """
    error = status.get("error")
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            pass
    if isinstance(error, dict) and {"type", "message", "retryable"} <= error.keys():
        return JobFailedError(f"job {job_id} failed: {error['type']}: {error['message']}", job_id=job_id,
                              error_type=str(error["type"]), retryable=bool(error["retryable"]))
    if isinstance(error, dict) and "error_message" in error:  # the SDK's report of an uncaught exception
        message = f"{error.get('error_type', 'error')}: {error['error_message']}"
    else:
        message = str(error or "no error message")
    return JobFailedError(f"job {job_id} failed: {message[:500]}", job_id=job_id, retryable=True)


def poll_job(
    client: RunPodClient,
    job_id: str,
    *,
    deadline: float,
    interval_s: float,
    cap_s: float,
    on_status: Callable[[str, dict[str, Any]], None],
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Poll ``/status`` until the job is final, with jittered exponential backoff up to ``cap_s``.

    Args:
        deadline: ``time.time()`` after which we give up on the job (it is then cancelled).
        interval_s: First wait; waits double (with jitter) up to ``cap_s``, and restart from
            ``interval_s`` when the status changes.
        on_status: Called with (status, status object) whenever the status or its progress output changes.
        stop: When set, polling ends at once (the flow run is being cancelled or shut down).

    Returns:
        The final status object (status COMPLETED, FAILED, CANCELLED or TIMED_OUT).

    Raises:
        JobTimedOutError: the deadline passed (retryable). JobFailedError: unknown status, or the job
            vanished (404; retryable). JobAbandonedError: ``stop`` was set. RunPodAPIError: the API kept failing.
    """
    attempt, last = 0, None
    wait = stop.wait if stop is not None else time.sleep
    while True:
        if stop is not None and stop.is_set():
            raise JobAbandonedError(f"stopped waiting for job {job_id}", job_id=job_id, retryable=False)
        try:
            status = client.status(job_id)
        except RunPodAPIError as err:
            if err.status_code == 404:
                raise JobFailedError(f"job {job_id} is unknown to RunPod (expired or purged)", job_id=job_id,
                                     retryable=True) from None
            raise
        state = status.get("status")
        seen = (state, json.dumps(status.get("output"), sort_keys=True) if state in ACTIVE_STATUSES else None)
        if seen != last:
            if last is not None and seen[0] != last[0]:
                attempt = 0
            last = seen
            on_status(str(state), status)
        if state in FINAL_STATUSES:
            return status
        if state not in ACTIVE_STATUSES:
            raise JobFailedError(f"job {job_id}: unexpected status {state!r}", job_id=job_id, retryable=True)
        if time.time() > deadline:
            try:
                client.cancel(job_id)
            except RunPodAPIError:
                pass  # its TTL ends it anyway
            raise JobTimedOutError(f"job {job_id} still {state} at our deadline; cancelled", job_id=job_id,
                                   retryable=True)
        wait(backoff_delay_s(attempt, base_s=interval_s, cap_s=cap_s))
        attempt += 1


@task(
    name="runpod-job",
    task_run_name="runpod job {chunk_key}",
    retries=len(RETRY_DELAYS_S),
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=is_transient_api_failure,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def run_runpod_job(endpoint: RunPodEndpoint, block_name: str, flow_run_id: str, chunk_key: str,
                   job_input: dict[str, Any], clip_count: int) -> list[dict[str, Any]]:
    """Run one chunk as a RunPod job: submit (or resume the recorded job), poll, return its results.

    Args:
        endpoint: The endpoint block (its API key is unwrapped only when the client is built).
        block_name: The block's saved name, recorded for the cancellation hook.
        flow_run_id: The flow run, keying the job record. chunk_key: The chunk's stable key.
        job_input: The handler input (an ``Img2VidJob`` dict; presigned URLs inside are never logged).
        clip_count: Clips in the job (the results must have as many).

    Returns:
        The handler's per-clip result dicts, in job order.

    Raises:
        JobFailedError / JobTimedOutError / JobCancelledError: the job ended badly (``retryable`` says
            whether resubmitting may help). RunPodAPIError: the API kept failing (Prefect retries it).
    """
    logger = get_run_logger()
    store = JobStore(flow_run_id)
    record = store.get(chunk_key)
    with endpoint.client() as client:
        if record is not None:
            job_id, submitted_at = record["job_id"], record["submitted_at"]
            logger.info("chunk %s: resuming RunPod job %s (no resubmission)", chunk_key, job_id)
        else:
            job_id = client.run(job_input, execution_timeout_s=endpoint.execution_timeout_s, ttl_s=endpoint.ttl_s)
            submitted_at = time.time()
            store.record_submitted(chunk_key, job_id=job_id, block=block_name, endpoint_id=endpoint.endpoint_id)
            logger.info("chunk %s: %d clip(s) -> RunPod job %s", chunk_key, clip_count, job_id)

        last_state: dict[str, str] = {}

        def on_status(state: str, status: dict[str, Any]) -> None:
            store.record_status(chunk_key, state)
            progress = status.get("output") if state in ACTIVE_STATUSES else None
            if progress and last_state.get("state") == state:
                logger.debug("job %s: %s %s", job_id, state, progress)
            else:
                logger.info("job %s: %s%s", job_id, state, f" {progress}" if progress else "")
            last_state["state"] = state

        status = poll_job(client, job_id, deadline=submitted_at + endpoint.poll_deadline_s(),
                          interval_s=endpoint.poll_interval_s, cap_s=endpoint.poll_backoff_cap_s, on_status=on_status,
                          stop=_STOP_EVENTS.get(flow_run_id))
    state = status["status"]
    if state == "COMPLETED":
        output = status.get("output")
        results = output.get("results") if isinstance(output, dict) else None
        if not isinstance(results, list) or len(results) != clip_count:
            raise JobFailedError(f"job {job_id} COMPLETED without {clip_count} results", job_id=job_id, retryable=True)
        return results
    if state == "TIMED_OUT":
        raise JobTimedOutError(f"job {job_id} exceeded the {endpoint.execution_timeout_s:g} s execution timeout",
                               job_id=job_id, retryable=True)
    if state == "CANCELLED":
        raise JobCancelledError(f"job {job_id} was cancelled", job_id=job_id, retryable=False)
    raise job_error(job_id, status)


def _outcome(item: Any, job: ClipJob | CaptionJob | AddAudioJob) -> Any:
    """The engine's result model (ClipResult, CaptionResult, AddAudioResult) or rebuilt engine error of one
    result element."""
    model, name_field = RESULT_MODELS[type(job)]
    name = getattr(job, name_field)
    if not isinstance(item, dict) or item.get(name_field) != name:
        return JobFailedError(f"result for {name!r} is missing or out of order", retryable=True)
    if item.get("ok"):
        return model.model_validate({k: v for k, v in item.items() if k != "ok"})
    return error_from_payload(item.get("error") or {})


def job_input_for(jobs: Sequence[Any], chunk: Chunk, settings: RenderSettings | None) -> dict[str, Any]:
    """The handler input of a chunk: an ``Img2VidJob`` of its clips, or the single caption/addaudio job."""
    first = jobs[chunk.indices[0]]
    if isinstance(first, ClipJob):
        return Img2VidJob(clips=[jobs[i] for i in chunk.indices], settings=settings).model_dump(mode="json")
    return first.model_dump(mode="json")


class RunPodBackend:
    """Backend for a ``RunPodEndpoint`` block: chunks of clips as RunPod jobs (see the module docstring).

    Args:
        endpoint: The endpoint block. block_name: Its saved name (recorded for the cancellation hook).
    """

    local_inputs_ok = False
    #: What the worker's handler serves (``worker_image.handler.OPERATIONS``).
    operations = frozenset({"img2vid", "caption", "addaudio"})

    def __init__(self, endpoint: RunPodEndpoint, block_name: str) -> None:
        self.endpoint, self.name = endpoint, block_name

    @property
    def upload_expiry_s(self) -> int:
        """Lifetime a presigned PUT needs here: every attempt may wait its full deadline
        (``max_attempts x (ttl_s + execution_timeout_s)``), and URLs are signed before the first one."""
        return int(math.ceil(self.endpoint.max_attempts * self.endpoint.poll_deadline_s()))

    @classmethod
    def load(cls, block_name: str) -> "RunPodBackend":
        """The backend for the saved ``RunPodEndpoint`` block ``block_name``.

        Raises:
            RequestError: (field ``backend``) no such block.
        """
        try:
            endpoint = RunPodEndpoint.load(block_name)
        except ValueError as exc:
            raise RequestError("backend", f"no RunPodEndpoint block named {block_name!r} ({exc})") from None
        return cls(endpoint, block_name)

    def _check_outputs(self, jobs: Sequence[Any]) -> None:
        if self.endpoint.workers_share_filesystem:
            return
        if any(isinstance(job.output, FileOutput) for job in jobs):
            raise RequestError("storage", "RunPod workers cannot write to this machine's folders; use an S3 "
                               "storage block (or set workers_share_filesystem on the RunPod block for local workers)")

    def __call__(self, jobs: Sequence[Any], settings: RenderSettings | None, on_done: OnDone) -> None:
        """Render ``jobs`` on the endpoint; ``on_done(index, outcome)`` once per job, in this thread.

        ``jobs`` are ``ClipJob`` (img2vid: packed into chunks) or ``CaptionJob`` / ``AddAudioJob`` (one
        RunPod job each; ``settings`` is None).

        Raises:
            RequestError: (field ``storage``) file outputs with workers that do not share this filesystem.
        """
        self._check_outputs(jobs)
        logger = get_run_logger()
        endpoint = self.endpoint
        flow_run_id = str(flow_run.id)
        if all(isinstance(job, ClipJob) for job in jobs):
            estimates = [endpoint.estimate_s(settings.frame_count(job.duration_s)) for job in jobs]
            planned = plan_chunks(estimates, budget_s=endpoint.chunk_budget_s(), min_chunks=endpoint.max_concurrent_jobs)
        else:
            planned = [(index,) for index in range(len(jobs))]
        pending = deque(Chunk(ix) for ix in planned)
        logger.info("runpod %s: %d clip(s) in %d job(s), at most %d at once", endpoint.endpoint_id, len(jobs),
                    len(pending), endpoint.max_concurrent_jobs)
        reported: set[int] = set()

        def report(index: int, outcome: Any) -> None:
            if index in reported:  # a clip is reported exactly once, whatever the platform did
                logger.warning("job %d already reported; ignoring a second outcome", index)
                return
            reported.add(index)
            on_done(index, outcome)

        def settle(chunk: Chunk, future: Any) -> None:
            try:
                results = future.result()
            except JobFailedError as exc:
                if exc.retryable and chunk.attempt < endpoint.max_attempts:
                    again = chunk.halves() if isinstance(exc, JobTimedOutError) else [Chunk(chunk.indices, chunk.attempt + 1)]
                    logger.warning("chunk %s: %s; resubmitting as %s", chunk.key, exc, [c.key for c in again])
                    pending.extend(again)
                    return
                for index in chunk.indices:
                    report(index, exc)
                return
            except Exception as exc:  # API errors after retries, bugs: final for these clips, the others go on
                for index in chunk.indices:
                    report(index, exc)
                return
            retry: list[int] = []
            for index, item in zip(chunk.indices, results):
                outcome = _outcome(item, jobs[index])
                if isinstance(outcome, Exception) and getattr(outcome, "retryable", False) \
                        and chunk.attempt < endpoint.max_attempts:
                    retry.append(index)
                else:
                    report(index, outcome)
            if retry:
                logger.info("chunk %s: %d clip(s) failed transiently; resubmitting", chunk.key, len(retry))
                pending.append(Chunk(tuple(retry), chunk.attempt + 1))

        stop = _STOP_EVENTS.setdefault(flow_run_id, threading.Event())
        try:
            with ThreadPoolTaskRunner(max_workers=endpoint.max_concurrent_jobs) as runner:
                try:
                    self._drive(runner, jobs, settings, pending, settle, flow_run_id)
                except BaseException:  # cancellation (TerminationSignal), Ctrl-C: let the pollers go at once
                    stop.set()
                    raise
        finally:
            _STOP_EVENTS.pop(flow_run_id, None)
        for index in range(len(jobs)):  # defensive: every clip gets an outcome
            if index not in reported:
                report(index, JobFailedError(f"job {index} of {len(jobs)} got no result", retryable=False))

    def _drive(self, runner: ThreadPoolTaskRunner, jobs: Sequence[Any], settings: RenderSettings | None,
               pending: deque[Chunk], settle: Callable[[Chunk, Any], None], flow_run_id: str) -> None:
        """Keep up to ``max_concurrent_jobs`` chunk tasks in flight until none is pending; settle each as it ends."""
        endpoint = self.endpoint
        in_flight: dict[Any, Chunk] = {}
        while pending or in_flight:
            while pending and len(in_flight) < endpoint.max_concurrent_jobs:
                chunk = pending.popleft()
                job_input = job_input_for(jobs, chunk, settings)
                future = runner.submit(run_runpod_job, parameters={
                    "endpoint": endpoint, "block_name": self.name, "flow_run_id": flow_run_id,
                    "chunk_key": chunk.key, "job_input": job_input, "clip_count": len(chunk.indices)})
                in_flight[future] = chunk
            done, _ = concurrent.futures.wait([f.wrapped_future for f in in_flight],
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for future in [f for f in in_flight if f.wrapped_future in done]:
                settle(in_flight.pop(future), future)
