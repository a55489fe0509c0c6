"""Session-wide fixtures: real media, a Prefect test harness, a local HTTP origin for inputs."""

from __future__ import annotations

import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = REPO_ROOT.parent / "shared" / "media"
EXAMPLE_PHOTOS = REPO_ROOT / "examples" / "photos"

# Tests read local inputs from the repo, ../shared/media and their tmp folders; servers and workers the
# tests start inherit this (tests of the restriction itself narrow it with monkeypatch).
os.environ.setdefault("API_GPU_LOCAL_INPUT_ROOTS", os.pathsep.join([str(REPO_ROOT.parent), tempfile.gettempdir()]))


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """``../shared/media`` beside the repo (real photos, videos, audio, subtitles); skips when absent."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"shared media not found at {SHARED_MEDIA} (tests on real media need ../shared/media)")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def example_photos() -> Path:
    """The photos bundled with the repo for the demo (always present)."""
    return EXAMPLE_PHOTOS


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API (SQLite) for the whole session, via Prefect's own test harness."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def renders_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local-storage root for one test (``API_GPU_RENDERS_DIR``)."""
    root = tmp_path / "renders"
    monkeypatch.setenv("API_GPU_RENDERS_DIR", str(root))
    return root


@dataclass
class Route:
    """One canned answer of the origin: a body and a status, or a sequence of statuses to cycle through."""

    body: bytes = b""
    statuses: list[int] = field(default_factory=lambda: [200])
    content_type: str = "application/octet-stream"
    hits: int = 0


class Origin:
    """A real HTTP server on 127.0.0.1 serving canned routes; counts hits per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/loop"):  # redirects to itself forever
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/fake-gzip"):  # claims gzip, is not
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", "12")
                    self.end_headers()
                    self.wfile.write(b"not gzip!!!!")
                    return
                route = origin.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                status = route.statuses[min(route.hits, len(route.statuses) - 1)]
                route.hits += 1
                body = route.body if status == 200 else b"error"
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, body: bytes = b"", *, statuses: list[int] | None = None,
            content_type: str = "application/octet-stream") -> str:
        """Serve ``body`` at ``path``; returns the full URL."""
        self.routes[path] = Route(body=body, statuses=statuses or [200], content_type=content_type)
        return self.base_url + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def origin() -> Iterator[Origin]:
    """A local HTTP origin for input URLs (dead links, flaky servers, non-image bytes)."""
    server = Origin()
    try:
        yield server
    finally:
        server.close()


def copy_media(src: Path, dest_dir: Path, name: str | None = None) -> Path:
    """Copy a media file into a test's tmp folder (so tests never write next to the originals)."""
    dest = dest_dir / (name or src.name)
    shutil.copyfile(src, dest)
    return dest
