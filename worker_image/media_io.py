"""Getting inputs in and outputs out: http(s) downloads with limits, local copies, atomic delivery.

Downloads stream to a name we choose (the caller's file name never reaches a filtergraph or argv).
Delivery never leaves a partial file at the final location: local outputs are written to a hidden
sibling and renamed into place; presigned PUTs send the whole body in one request, which S3 stores
atomically or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from .contract import FileOutput, PutUrlOutput, input_kind, local_path
from .errors import DownloadError, InputError, UploadError

log = logging.getLogger(__name__)

#: Connect/read timeouts for input downloads, seconds. A stalled origin is a transient failure.
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: Statuses worth asking again (request timeout, rate limit, server errors); other 4xx are final.
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CHUNK_BYTES = 1 << 20


#: Longest a whole download may take, seconds. The per-read timeout alone would let a server that
#: trickles one byte every 29 s hold a worker for weeks (found by adversarial testing).
DOWNLOAD_DEADLINE_S = 300.0


#: Environment variable listing the folders local inputs may be read from (``os.pathsep``-separated).
#: Default: the working directory (the repo for the demo and for deployments served by serve.sh). A
#: caller of a local deployment's REST API must not be able to render /etc/shadow into a video.
LOCAL_INPUT_ROOTS_ENV = "API_GPU_LOCAL_INPUT_ROOTS"


def local_input_roots() -> list[Path]:
    """The folders local inputs may come from: ``$API_GPU_LOCAL_INPUT_ROOTS`` or the working directory."""
    raw = os.environ.get(LOCAL_INPUT_ROOTS_ENV, "")
    return [Path(p).resolve() for p in (raw.split(os.pathsep) if raw.strip() else [os.getcwd()]) if p]


def _redact(url: str) -> str:
    """The URL without its query string (which may hold a signature) or user:password, for logs and errors."""
    parts = urlsplit(url.split("?", 1)[0])
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def fetch(url: str, dest: Path, *, max_bytes: int, allow_local: bool, field: str) -> Path:
    """Fetch an input to ``dest`` (a path we chose) and return it.

    Args:
        url: http(s) URL, or (``allow_local`` only) a ``file://`` URL or local path.
        dest: Destination file; its parent must exist.
        max_bytes: Refuse inputs larger than this.
        allow_local: Whether local paths are acceptable (local backend only).
        field: Request field name used in errors, e.g. ``"image_url"``.

    Raises:
        InputError: unsupported scheme, local path not allowed, outside :func:`local_input_roots` or
            missing, over ``max_bytes``.
        DownloadError: HTTP error status (retryable for 408/425/429/5xx) or network failure
            (retryable).
    """
    try:
        kind = input_kind(url)
    except ValueError as exc:
        raise InputError(str(exc), field=field) from None
    if kind == "local":
        if not allow_local:
            raise InputError("local paths are only accepted by the local backend; use an http(s) URL", field=field)
        src = local_path(url).resolve()
        if not any(src == root or root in src.parents for root in local_input_roots()):
            raise InputError(f"local inputs must be inside the allowed folders (${LOCAL_INPUT_ROOTS_ENV}, default "
                             "the working directory)", field=field)
        if not src.is_file():
            raise InputError(f"no such file: {src}", field=field)
        size = src.stat().st_size
        if size > max_bytes:
            raise InputError(f"input is {size} bytes, over the {max_bytes}-byte limit", field=field)
        try:
            shutil.copyfile(src, dest)
        except OSError as exc:
            raise DownloadError(f"could not copy the input to the scratch disk: {exc.strerror or exc}", field=field,
                                retryable=True) from None
        return dest

    shown = _redact(url)
    deadline = time.monotonic() + DOWNLOAD_DEADLINE_S
    try:
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True, max_redirects=5) as client:
            with client.stream("GET", url) as resp:
                if resp.status_code >= 400:
                    retryable = resp.status_code in RETRYABLE_STATUS
                    raise DownloadError(
                        f"GET {shown} answered HTTP {resp.status_code} {resp.reason_phrase}"
                        + ("" if retryable else " (not retried: the link is dead or forbidden)"),
                        field=field,
                        retryable=retryable,
                    )
                declared = int(resp.headers.get("content-length") or 0)
                if declared > max_bytes:
                    raise InputError(f"input is {declared} bytes, over the {max_bytes}-byte limit", field=field)
                got = 0
                with open(dest, "wb") as fh:
                    for chunk in resp.iter_bytes(_CHUNK_BYTES):
                        got += len(chunk)
                        if got > max_bytes:
                            raise InputError(f"input is over the {max_bytes}-byte limit", field=field)
                        if time.monotonic() > deadline:
                            raise DownloadError(f"GET {shown} took over {DOWNLOAD_DEADLINE_S:g} s (server too slow)",
                                                field=field, retryable=True)
                        fh.write(chunk)
    except httpx.TimeoutException as exc:
        raise DownloadError(f"GET {shown} timed out ({type(exc).__name__})", field=field, retryable=True) from None
    except httpx.UnsupportedProtocol:
        raise DownloadError(f"GET {shown} redirected to a scheme other than http(s)", field=field,
                            retryable=False) from None
    except httpx.TooManyRedirects:
        raise DownloadError(f"GET {shown} redirected more than 5 times", field=field, retryable=False) from None
    except httpx.DecodingError as exc:
        raise InputError(f"GET {shown}: the body does not match its Content-Encoding ({exc})", field=field) from None
    except httpx.TransportError as exc:
        raise DownloadError(f"GET {shown} failed: {type(exc).__name__}", field=field, retryable=True) from None
    except (httpx.InvalidURL, ValueError) as exc:
        raise InputError(f"invalid URL or response: {exc}", field=field) from None
    except httpx.HTTPError as exc:  # any other client-side failure: typed, final
        raise DownloadError(f"GET {shown} failed: {type(exc).__name__}", field=field, retryable=False) from None
    except OSError as exc:  # the scratch disk (full, unwritable): the worker's problem, maybe not the next one's
        raise DownloadError(f"could not store the input on the worker's scratch disk: {exc.strerror or exc}",
                            field=field, retryable=True) from None
    return dest


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def deliver(src: Path, output: FileOutput | PutUrlOutput) -> tuple[int, str]:
    """Deliver a finished file to its job's output target and return ``(size_bytes, sha256_hex)``.

    ``FileOutput`` -> :func:`deliver_file` (atomic rename); ``PutUrlOutput`` -> :func:`deliver_put`
    (one presigned PUT carrying the checksum). The file is hashed once, here.

    Raises:
        UploadError: delivery failed (see the two functions).
    """
    size_bytes, digest = src.stat().st_size, sha256_file(src)
    if isinstance(output, FileOutput):
        deliver_file(src, Path(output.path))
    else:
        deliver_put(src, output.url, key=output.key, sha256=digest)
    return size_bytes, digest


def deliver_file(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` atomically: a hidden temporary sibling, fsync, then ``os.replace``.

    A reader of ``dest`` sees either the previous file or the complete new one, never a partial one.

    Raises:
        UploadError: the destination folder cannot be created or written.
    """
    if dest.exists() and not dest.is_file():
        raise UploadError(f"refusing to replace {dest}: it exists and is not a regular file", retryable=False)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, _CHUNK_BYTES)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise UploadError(f"could not write {dest}: {exc}", retryable=False) from None


def deliver_put(src: Path, url: str, *, key: str, timeout_s: float = 300.0, sha256: str | None = None) -> None:
    """Upload ``src`` with one HTTP PUT to a presigned URL. Logs the key, never the URL.

    The body goes in one request, which S3 stores atomically: an interrupted upload leaves nothing at
    the key (or the previous object). The PUT carries ``x-amz-checksum-sha256`` (base64 SHA-256 of the
    body, with ``x-amz-sdk-checksum-algorithm: SHA256``): MinIO and S3 refuse a body that does not match
    it and keep it with the object, where the orchestrator's HEAD check reads it (``tasks.storage_s3``).
    A presigned URL cannot sign that header in advance, and AWS S3 refuses unsigned ``x-amz-*`` headers
    (403 ``HeadersNotSigned``, as reported by SDK users; MinIO accepts them); on that answer the body is
    sent once more without them, and the orchestrator then hashes the stored object itself.

    Args:
        src: The file to upload.
        url: Presigned PUT URL (a bearer credential: never logged, never put in an error).
        key: The object key the URL writes to, for logs and errors.
        timeout_s: Read/write timeout of the request, seconds (connect: 10 s).
        sha256: Hex SHA-256 of ``src`` when the caller already has it; computed otherwise.

    Raises:
        UploadError: non-2xx answer (retryable for 408/429/5xx) or network failure (retryable). The message
            has the S3 error code and message, not the response body (which may echo signed request parts).
    """
    import base64
    import re

    size = src.stat().st_size
    digest_b64 = base64.b64encode(bytes.fromhex(sha256 or sha256_file(src))).decode("ascii")
    checksum_headers = {"x-amz-checksum-sha256": digest_b64, "x-amz-sdk-checksum-algorithm": "SHA256"}

    def put(extra: dict[str, str]) -> httpx.Response:
        try:
            with open(src, "rb") as fh:
                return httpx.put(url, content=fh, timeout=httpx.Timeout(timeout_s, connect=10.0),
                                 headers={"Content-Length": str(size), "Content-Type": "video/mp4", **extra})
        except httpx.TransportError as exc:
            raise UploadError(f"PUT to key {key!r} failed: {type(exc).__name__}", retryable=True) from None

    resp = put(checksum_headers)
    if resp.status_code == 403 and "HeadersNotSigned" in resp.text:
        log.info("key %s: the server refuses unsigned checksum headers; uploading without them", key)
        resp = put({})
    if resp.status_code >= 300:
        fields = {tag: re.search(rf"<{tag}>(.*?)</{tag}>", resp.text, re.S) for tag in ("Code", "Message")}
        detail = " ".join(m.group(1).strip()[:200] for m in fields.values() if m) or resp.reason_phrase
        raise UploadError(
            f"PUT to key {key!r} answered HTTP {resp.status_code}: {detail}",
            retryable=resp.status_code in RETRYABLE_STATUS,
        )
    log.info("uploaded %d bytes to key %s", size, key)
