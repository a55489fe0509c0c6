"""A local fake of RunPod Serverless' control plane, driven by real worker processes.

It speaks both HTTP APIs on 127.0.0.1:

* the **client API** the orchestrator uses: ``POST /v2/{ep}/run``, ``GET /v2/{ep}/status/{id}``,
  ``POST /v2/{ep}/cancel/{id}``, ``GET /v2/{ep}/health``, ``POST /v2/{ep}/purge-queue``
  (``Authorization: Bearer <api key>``);
* the **worker API** the runpod SDK's production loop uses (``runpod/serverless/modules/rp_job.py``,
  ``rp_http.py``, ``rp_ping.py``): ``GET job-take/{worker}`` (long-poll; 204 when idle),
  ``GET job-stop/{worker}`` (long-poll; ``{"jobsToStop": [...]}``), ``POST job-done/{worker}/{id}``
  (final result, or ``{"status": "IN_PROGRESS", "output": ...}`` for progress updates),
  ``POST job-stream/{worker}/{id}`` and ``GET ping/{worker}``.

Behaviour modelled on the platform: a real FIFO queue (jobs are IN_QUEUE until a worker takes them);
``policy.executionTimeout`` (TIMED_OUT, and a stop signal to the worker); cancel (CANCELLED, and a
stop signal if running); a worker that stops pinging for ``worker_lost_s`` has its job put back in the
queue (same job id) and anything it posts later is ignored; late progress posts for finished jobs are
ignored. Handler errors are stored as a JSON string in ``error``, as the platform shows them.

Fault injection: ``run_429`` (answer the next N ``/run`` calls 429), ``status_503`` (the next N
``/status`` calls 503).

:func:`worker_env` and :class:`WorkerPool` start ``worker_image/handler.py`` under the SDK's real
loop (``runpod.serverless.start``): the SDK sees ``RUNPOD_WEBHOOK_GET_JOB`` and so runs as on RunPod;
``RUNPOD_SKIP_AUTO_SYSTEM_CHECKS`` / ``RUNPOD_SKIP_GPU_CHECK`` skip its start-up fitness checks
(memory, disk, internet, CUDA), which do not apply here.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


@dataclass
class FakeJob:
    """One job as the fake platform tracks it."""

    id: str
    input: Any
    execution_timeout_s: float | None
    ttl_s: float | None
    status: str = "IN_QUEUE"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    output: Any = None
    error: Any = None
    takes: int = 0
    done_posts: int = 0


class FakeRunPod:
    """The fake control plane. Start it, point a ``RunPodEndpoint`` block at :attr:`base_url`.

    Args:
        endpoint_id: The endpoint id it serves. api_key: The client API key it accepts.
        worker_key: The key workers must send (``RUNPOD_AI_API_KEY``).
        take_wait_s: How long job-take / job-stop long-polls are held open when there is nothing to hand out.
        worker_lost_s: A worker silent (no ping, no job-take) this long is lost; its job is requeued.
    """

    def __init__(self, *, endpoint_id: str = "fake-endpoint", api_key: str = "client-key",
                 worker_key: str = "worker-key", take_wait_s: float = 1.0, worker_lost_s: float = 4.0) -> None:
        self.endpoint_id, self.api_key, self.worker_key = endpoint_id, api_key, worker_key
        self.take_wait_s, self.worker_lost_s = take_wait_s, worker_lost_s
        self.cond = threading.Condition()
        self.jobs: dict[str, FakeJob] = {}
        self.queue: deque[str] = deque()
        self.stop_signals: dict[str, set[str]] = {}
        self.last_seen: dict[str, float] = {}
        self.counts: dict[str, int] = {k: 0 for k in (
            "run", "run_429", "status", "status_503", "cancel", "health", "purge", "take", "done",
            "progress", "ignored_posts", "requeued", "pings", "stop_signals")}
        self.cancelled_ids: list[str] = []
        self.run_429 = 0
        self.status_503 = 0
        self.events: list[tuple[float, str, str]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not raw:
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    return None

            def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                segs = [s for s in parts.path.split("/") if s]
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                body = self._body() if method == "POST" else None
                if len(segs) < 3 or segs[0] != "v2" or segs[1] != fake.endpoint_id:
                    return self._send(404, {"error": "no such endpoint"})
                action, rest = segs[2], segs[3:]
                auth = self.headers.get("Authorization", "")
                worker_api = action in ("job-take", "job-take-batch", "job-stop", "job-done", "job-stream", "ping")
                if worker_api:
                    if auth != fake.worker_key:
                        return self._send(401, {"error": "bad worker key"})
                    status, payload = fake.worker_call(action, rest, query, body)
                else:
                    if auth != f"Bearer {fake.api_key}":
                        return self._send(401, {"error": "unauthorized"})
                    status, payload = fake.client_call(method, action, rest, body)
                headers = {"Retry-After": "0.2"} if status == 429 else None
                self._send(status, payload, headers)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                         threading.Thread(target=self._monitor, daemon=True)]
        self._running = True
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ helpers
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The client API root, like ``https://api.runpod.ai/v2``."""
        return f"{self.url}/v2"

    def _event(self, job_id: str, what: str) -> None:
        self.events.append((time.time(), job_id, what))

    def _finish(self, job: FakeJob, status: str) -> None:
        job.status, job.finished_at = status, time.time()
        self._event(job.id, status)
        self.cond.notify_all()

    def _signal_stop(self, job: FakeJob) -> None:
        if job.worker:
            self.stop_signals.setdefault(job.worker, set()).add(job.id)
            self.counts["stop_signals"] += 1
            self.cond.notify_all()

    def close(self) -> None:
        """Stop serving."""
        self._running = False
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate, timeout_s: float = 60.0) -> bool:
        """Block until ``predicate(self)`` is true (evaluated under the lock) or the timeout passes."""
        deadline = time.time() + timeout_s
        with self.cond:
            while not predicate(self):
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
        return True

    # ------------------------------------------------------------------ monitor
    def _monitor(self) -> None:
        while self._running:
            time.sleep(0.1)
            now = time.time()
            with self.cond:
                for job in self.jobs.values():
                    if job.status == "IN_PROGRESS":
                        if job.execution_timeout_s and now - (job.started_at or now) > job.execution_timeout_s:
                            self._signal_stop(job)
                            self._finish(job, "TIMED_OUT")
                        elif job.worker and now - self.last_seen.get(job.worker, now) > self.worker_lost_s:
                            self._event(job.id, f"worker {job.worker} lost; requeued")
                            job.status, job.worker, job.started_at = "IN_QUEUE", None, None
                            self.queue.appendleft(job.id)
                            self.counts["requeued"] += 1
                            self.cond.notify_all()
                    elif job.status == "IN_QUEUE" and job.ttl_s and now - job.created_at > job.ttl_s:
                        self.queue.remove(job.id) if job.id in self.queue else None
                        self._finish(job, "TIMED_OUT")

    # ------------------------------------------------------------------ client API
    def client_call(self, method: str, action: str, rest: list[str], body: Any) -> tuple[int, Any]:
        with self.cond:
            if action == "run" and method == "POST":
                self.counts["run"] += 1
                if self.run_429 > 0:
                    self.run_429 -= 1
                    self.counts["run_429"] += 1
                    return 429, {"error": "rate limited"}
                if not isinstance(body, dict) or "input" not in body:
                    return 400, {"error": "body needs input"}
                policy = body.get("policy") or {}
                ms = lambda key: policy[key] / 1000.0 if policy.get(key) else None  # noqa: E731
                job = FakeJob(id=f"job-{uuid.uuid4().hex[:12]}", input=body["input"],
                              execution_timeout_s=ms("executionTimeout"), ttl_s=ms("ttl"))
                self.jobs[job.id] = job
                self.queue.append(job.id)
                self._event(job.id, "IN_QUEUE")
                self.cond.notify_all()
                return 200, {"id": job.id, "status": job.status}
            if action == "status" and method == "GET" and rest:
                self.counts["status"] += 1
                if self.status_503 > 0:
                    self.status_503 -= 1
                    self.counts["status_503"] += 1
                    return 503, {"error": "upstream unavailable"}
                job = self.jobs.get(rest[0])
                if job is None:
                    return 404, {"error": "job not found"}
                answer: dict[str, Any] = {"id": job.id, "status": job.status,
                                          "delayTime": int(((job.started_at or time.time()) - job.created_at) * 1000)}
                if job.output is not None:
                    answer["output"] = job.output
                if job.error is not None:
                    answer["error"] = job.error
                if job.started_at:
                    answer["executionTime"] = int(((job.finished_at or time.time()) - job.started_at) * 1000)
                return 200, answer
            if action == "cancel" and method == "POST" and rest:
                self.counts["cancel"] += 1
                job = self.jobs.get(rest[0])
                if job is None:
                    return 404, {"error": "job not found"}
                self.cancelled_ids.append(job.id)
                if job.status not in FINAL:
                    if job.id in self.queue:
                        self.queue.remove(job.id)
                    self._signal_stop(job)
                    self._finish(job, "CANCELLED")
                return 200, {"id": job.id, "status": job.status}
            if action == "health" and method == "GET":
                self.counts["health"] += 1
                return 200, self.health()
            if action == "purge-queue" and method == "POST":
                self.counts["purge"] += 1
                removed = 0
                while self.queue:
                    self._finish(self.jobs[self.queue.popleft()], "CANCELLED")
                    removed += 1
                return 200, {"removed": removed, "status": "completed"}
        return 404, {"error": f"no route {method} {action}"}

    def health(self) -> dict[str, Any]:
        """``/health``'s answer: job counts by state and worker counts."""
        by = lambda s: sum(1 for j in self.jobs.values() if j.status == s)  # noqa: E731
        now = time.time()
        alive = {w for w, t in self.last_seen.items() if now - t <= self.worker_lost_s}
        running = {j.worker for j in self.jobs.values() if j.status == "IN_PROGRESS" and j.worker}
        return {"jobs": {"completed": by("COMPLETED"), "failed": by("FAILED") + by("TIMED_OUT"),
                         "inProgress": by("IN_PROGRESS"), "inQueue": by("IN_QUEUE"), "retried": self.counts["requeued"]},
                "workers": {"idle": len(alive - running), "running": len(running & alive)}}

    # ------------------------------------------------------------------ worker API
    def worker_call(self, action: str, rest: list[str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        worker = rest[0] if rest else "?"
        with self.cond:
            self.last_seen[worker] = time.time()
            if action == "ping":
                self.counts["pings"] += 1
                return 200, {}
            if action in ("job-take", "job-take-batch"):
                deadline = time.time() + self.take_wait_s
                while not self.queue and time.time() < deadline and self._running:
                    self.cond.wait(deadline - time.time())
                    self.last_seen[worker] = time.time()
                if not self.queue:
                    return 204, None
                job = self.jobs[self.queue.popleft()]
                job.status, job.worker, job.started_at = "IN_PROGRESS", worker, time.time()
                job.takes += 1
                self.counts["take"] += 1
                self._event(job.id, f"IN_PROGRESS on {worker}")
                self.cond.notify_all()
                taken = {"id": job.id, "input": job.input}
                return 200, ([taken] if action == "job-take-batch" else taken)
            if action == "job-stop":
                deadline = time.time() + self.take_wait_s
                while not self.stop_signals.get(worker) and time.time() < deadline and self._running:
                    self.cond.wait(deadline - time.time())
                ids = sorted(self.stop_signals.pop(worker, set()))
                return (200, {"jobsToStop": ids}) if ids else (204, None)
            if action in ("job-done", "job-stream"):
                job = self.jobs.get(rest[1]) if len(rest) > 1 else None
                if action == "job-stream":
                    return 200, {}
                if job is None or job.status != "IN_PROGRESS" or job.worker != worker:
                    self.counts["ignored_posts"] += 1  # late progress, a lost worker, a stopped job
                    return 200, {}
                if isinstance(body, dict) and body.get("status") == "IN_PROGRESS":
                    self.counts["progress"] += 1
                    job.output = body.get("output")
                    return 200, {}
                self.counts["done"] += 1
                job.done_posts += 1
                body = body if isinstance(body, dict) else {}
                if body.get("error") is not None:
                    error = body["error"]
                    job.error = error if isinstance(error, str) else json.dumps(error)
                    job.output = None
                    self._finish(job, "FAILED")
                else:
                    job.output = body.get("output")
                    self._finish(job, "COMPLETED")
                return 200, {}
        return 404, {"error": f"no route {action}"}


def worker_env(fake: FakeRunPod, worker_id: str, home: Path) -> dict[str, str]:
    """The environment RunPod gives a worker, pointed at ``fake`` (see the SDK's rp_job / rp_http / rp_ping)."""
    root = f"{fake.base_url}/{fake.endpoint_id}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PREFECT_"))}
    env.update({
        "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID?gpu=fake",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID?gpu=fake",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID?gpu=fake",
        "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID",
        "RUNPOD_PING_INTERVAL": "1000",
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_AI_API_KEY": fake.worker_key,
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_SKIP_GPU_CHECK": "true",
        "HOME": str(home),  # no ~/.runpod/config.toml credentials leak in
        "PYTHONUNBUFFERED": "1",
    })
    return env


class WorkerPool:
    """Real worker processes: ``python worker_image/handler.py`` under the SDK's production loop.

    Each runs in its own process group (the SDK forks a heartbeat process), so :meth:`kill` takes the
    whole "container" down, as when a RunPod worker dies.
    """

    def __init__(self, fake: FakeRunPod, count: int, log_dir: Path) -> None:
        self.fake, self.log_dir = fake, log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        log_dir.mkdir(parents=True, exist_ok=True)
        for n in range(count):
            self.start(f"worker-{n + 1}")

    def start(self, worker_id: str) -> None:
        """Start one worker process."""
        home = self.log_dir / f"{worker_id}-home"
        home.mkdir(exist_ok=True)
        log = open(self.log_dir / f"{worker_id}.log", "ab")
        self.procs[worker_id] = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "worker_image" / "handler.py")], cwd=REPO_ROOT,
            env=worker_env(self.fake, worker_id, home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until every worker has polled the fake once."""
        ok = self.fake.wait_for(lambda f: all(w in f.last_seen for w in self.procs), timeout_s)
        if not ok:
            raise TimeoutError(f"workers did not start; see logs in {self.log_dir}")

    def kill(self, worker_id: str) -> None:
        """SIGKILL a worker and its heartbeat process (no goodbye to the platform)."""
        proc = self.procs[worker_id]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def alive(self, worker_id: str) -> bool:
        """Whether the worker process is still running."""
        return self.procs[worker_id].poll() is None

    def log(self, worker_id: str) -> str:
        """The worker's captured stdout/stderr."""
        return (self.log_dir / f"{worker_id}.log").read_text(errors="replace")

    def close(self) -> None:
        """SIGTERM every worker (the SDK shuts down gracefully), SIGKILL stragglers."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
