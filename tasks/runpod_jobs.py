"""Which RunPod jobs a flow run submitted: a small state store other processes can read.

One JSON file per flow run, ``<state dir>/<flow_run_id>.json``::

    {"block": "render-gpu", "endpoint_id": "abc123",
     "jobs": {"c000-019.a1": {"job_id": "...", "status": "IN_QUEUE", "submitted_at": 1733...}}}

It serves two readers besides the task that wrote it:

* a Prefect **task retry** of the same chunk (same flow run, same chunk key) finds the job id and resumes
  polling that job instead of submitting a duplicate;
* the flow's **on_cancellation hook** (:func:`cancel_runpod_jobs`), which Prefect may run in another
  process (the runner's), cancels every job that is not final.

The file holds job ids and the block's *name*, never the API key or a presigned URL. Writes take an
exclusive ``fcntl`` lock and replace the file atomically, so threads and processes never see half a file.
The folder is ``$API_GPU_STATE_DIR`` or ``$PREFECT_HOME/api-gpu/runpod-jobs``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blocks.runpod_api import FINAL_STATUSES

log = logging.getLogger(__name__)

#: Environment variable naming the state folder.
STATE_DIR_ENV = "API_GPU_STATE_DIR"


def state_dir() -> Path:
    """``$API_GPU_STATE_DIR``, else ``$PREFECT_HOME/api-gpu/runpod-jobs`` (PREFECT_HOME defaults to ~/.prefect)."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()) / "api-gpu" / "runpod-jobs"


class JobStore:
    """The job records of one flow run.

    Args:
        flow_run_id: The flow run (its id, as a string).
        root: The state folder (default :func:`state_dir`).
    """

    def __init__(self, flow_run_id: str, root: Path | None = None) -> None:
        self.flow_run_id = str(flow_run_id)
        self.root = root or state_dir()
        self.path = self.root / f"{self.flow_run_id}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{self.flow_run_id}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"jobs": {}}

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.flow_run_id}.", suffix=".tmp", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def load(self) -> dict[str, Any]:
        """The whole record: ``{"block", "endpoint_id", "jobs": {chunk_key: {...}}}`` (empty jobs if none)."""
        with self._locked():
            return self._read()

    def get(self, chunk_key: str) -> dict[str, Any] | None:
        """The record of ``chunk_key`` (``{"job_id", "status", "submitted_at", ...}``) or None."""
        return self.load()["jobs"].get(chunk_key)

    def record_submitted(self, chunk_key: str, *, job_id: str, block: str, endpoint_id: str) -> None:
        """Record that ``chunk_key`` is RunPod job ``job_id`` (status IN_QUEUE, submitted now)."""
        with self._locked():
            data = self._read()
            data.update(block=block, endpoint_id=endpoint_id)
            data["jobs"][chunk_key] = {"job_id": job_id, "status": "IN_QUEUE", "submitted_at": time.time()}
            self._write(data)

    def record_status(self, chunk_key: str, status: str) -> None:
        """Update the last seen status of ``chunk_key`` (no-op if unknown or unchanged)."""
        with self._locked():
            data = self._read()
            record = data["jobs"].get(chunk_key)
            if record is None or record.get("status") == status:
                return
            record["status"] = status
            self._write(data)

    def active_jobs(self) -> dict[str, str]:
        """``{chunk_key: job_id}`` of every job not known to be final."""
        return {key: rec["job_id"] for key, rec in self.load()["jobs"].items()
                if rec.get("status") not in FINAL_STATUSES}


def cancel_jobs_of_flow_run(flow_run_id: str, *, root: Path | None = None) -> list[str]:
    """Cancel every RunPod job of a flow run that is not final, and record them CANCELLED.

    Loads the RunPodEndpoint block named in the state file (so it needs the Prefect API). Failures to
    cancel one job are logged and do not stop the others.

    Returns:
        The job ids a cancel was sent for.
    """
    store = JobStore(flow_run_id, root)
    if not store.path.exists():  # this run used no RunPod backend (or submitted nothing yet)
        return []
    data = store.load()
    active = store.active_jobs()
    if not active or not data.get("block"):
        return []
    from blocks.runpod import RunPodEndpoint

    endpoint = RunPodEndpoint.load(data["block"])
    cancelled = []
    with endpoint.client() as client:
        for chunk_key, job_id in active.items():
            try:
                client.cancel(job_id)
            except Exception as exc:  # keep cancelling the others; the job's TTL bounds the rest
                log.warning("cancel of RunPod job %s (%s) failed: %s", job_id, chunk_key, exc)
                continue
            store.record_status(chunk_key, "CANCELLED")
            cancelled.append(job_id)
    log.info("flow run %s: cancelled %d RunPod job(s)", flow_run_id, len(cancelled))
    return cancelled


def cancel_runpod_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_cancellation`` hook: cancel the RunPod jobs this flow run still has in flight.

    Prefect calls it as ``hook(flow, flow_run, state)``, possibly in another process than the flow's
    (the runner's), which is why job ids live in the :class:`JobStore` file.
    """
    try:
        cancel_jobs_of_flow_run(str(flow_run.id))
    except Exception as exc:  # a hook must not raise; say what was left running
        log.error("flow run %s: could not cancel its RunPod jobs: %s", flow_run.id, exc)
