"""Fixtures for the RunPod integration tests: the fake control plane, real worker processes, a block
pointing at them, tiny input images on a local HTTP origin, and a private job-state folder.

The Prefect harness (``prefect_harness``), ``origin`` and ``renders_dir`` come from ``tests/conftest.py``.
"""

from __future__ import annotations

import http.server
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from pydantic import SecretStr

from blocks.runpod import RunPodEndpoint
from tests.integration.fake_runpod import FakeRunPod, WorkerPool

#: Tiny renders: 2 shared CPU cores run every test.
TINY = {"fps": 24, "width_px": 160, "height_px": 90, "encoder": "libx264", "x264_preset": "veryfast"}
CLIP_S = 0.5


def jpeg_bytes(n: int) -> bytes:
    """A small distinct JPEG (colour depends on ``n``)."""
    img = Image.new("RGB", (192, 108), ((n * 37) % 256, (n * 91) % 256, (n * 53) % 256))
    img.paste((255, 255, 255), (10 + n % 50, 10, 40 + n % 50, 40))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


@pytest.fixture()
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``API_GPU_STATE_DIR`` for job records."""
    root = tmp_path / "state"
    monkeypatch.setenv("API_GPU_STATE_DIR", str(root))
    return root


@pytest.fixture()
def fake_runpod() -> Iterator[FakeRunPod]:
    """A fresh fake control plane on 127.0.0.1."""
    fake = FakeRunPod()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture()
def start_workers(fake_runpod: FakeRunPod, tmp_path: Path) -> Iterator[Callable[[int], WorkerPool]]:
    """``start_workers(n)``: n real worker processes polling the fake; stopped at teardown."""
    pools: list[WorkerPool] = []

    def start(count: int) -> WorkerPool:
        pool = WorkerPool(fake_runpod, count, tmp_path / "workers")
        pools.append(pool)
        pool.wait_ready()
        return pool

    try:
        yield start
    finally:
        for pool in pools:
            pool.close()


@pytest.fixture()
def runpod_block(prefect_harness: None, fake_runpod: FakeRunPod) -> Callable[..., str]:
    """``runpod_block(**overrides)`` saves a RunPodEndpoint block pointing at the fake; returns its name.

    Test defaults: fast polling (0.2 s, cap 1 s) and ``workers_share_filesystem`` (the workers run on
    this machine, so the local storage works).
    """

    def save(**overrides: object) -> str:
        fields: dict[str, object] = dict(endpoint_id=fake_runpod.endpoint_id, api_key=SecretStr(fake_runpod.api_key),
                                         base_url=fake_runpod.base_url, poll_interval_s=0.2, poll_backoff_cap_s=1.0,
                                         workers_share_filesystem=True)
        fields.update(overrides)
        name = f"fake-{uuid.uuid4().hex[:8]}"
        RunPodEndpoint(**fields).save(name, overwrite=True)
        return name

    return save


@pytest.fixture()
def images(origin) -> Callable[[int], list[dict]]:
    """``images(n)``: n seed-shaped image entries served by the local origin (0.5 s clips)."""

    def make(count: int, *, prefix: str = "img") -> list[dict]:
        out = []
        for n in range(count):
            url = origin.add(f"/{prefix}-{n}.jpg", jpeg_bytes(n), content_type="image/jpeg")
            out.append({"id": f"{prefix}-{n}", "image_url": url, "duracao": CLIP_S})
        return out

    return make


class SlowOrigin:
    """An HTTP origin whose first ``slow_hits`` answers per path wait ``delay_s`` before sending the image."""

    def __init__(self, *, delay_s: float, slow_hits: int = 1) -> None:
        self.hits: dict[str, int] = {}
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                n = origin.hits.get(self.path, 0)
                origin.hits[self.path] = n + 1
                if n < slow_hits:
                    time.sleep(delay_s)
                body = jpeg_bytes(len(self.path))
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def slow_origin() -> Iterator[Callable[..., SlowOrigin]]:
    """``slow_origin(delay_s=..., slow_hits=...)``: an origin that stalls its first answers per path."""
    made: list[SlowOrigin] = []

    def make(**kwargs: float) -> SlowOrigin:
        made.append(SlowOrigin(**kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for o in made:
            o.close()


try:  # the S3 storage tests' endpoint (tests/s3_endpoint.py), shared with tests/blocks when present
    from tests.s3_endpoint import s3_endpoint_fixture

    s3_endpoint = pytest.fixture(scope="session")(s3_endpoint_fixture)
except ImportError:  # pragma: no cover - that module lands with the S3 storage
    pass
