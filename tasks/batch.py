"""Batch renders: the manifest contract, reading it, and the batch's state in storage.

A manifest is a JSON list (or JSON Lines, one object per line) of :class:`BatchRequest`::

    {"operation": "img2vid", "request_id": "ep-12-clips", "body": {"images": [...], "path": "..."}}

``body`` is exactly the seed request body of that operation (the flow's parameters). The batch keeps
its state next to the outputs, under a storage prefix (``batches/<manifest name>/`` by default):

- ``done/<request_id>.json`` — written atomically when a request rendered completely (code 200); its
  presence means "do not render again" as long as the request's body is unchanged (SHA-256 compared).
- ``batch-summary.json`` — one row per request for the last run, written atomically at its end.

Both go through the same storage as the videos (a local folder or S3), so a rerun after a crash, on
any machine that sees that storage, renders only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RequestError, StorageError
from .errors import InvalidKeyError
from .keys import clip_filename, make_key, normalize_prefix
from .responses import Execution
from .storage import LocalFolderStorage, Storage

log = logging.getLogger(__name__)

Operation = Literal["img2vid", "caption", "addaudio"]

#: Largest manifest we read, bytes (10 MiB holds thousands of requests; a bigger file is a mistake).
MAX_MANIFEST_BYTES = 10 * 1024 * 1024
#: Most requests in one manifest (each is a subflow run: keep one batch reviewable in the UI).
MAX_BATCH_REQUESTS = 1000
#: Request ids become object keys (``done/<request_id>.json``): a safe, short alphabet.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: How long a presigned PUT for a state object stays valid, seconds (it is used at once).
STATE_PUT_EXPIRY_S = 900
SUMMARY_NAME = "batch-summary.json"


class BatchRequest(BaseModel):
    """One entry of a batch manifest: which operation, the caller's id, and the seed request body."""

    model_config = ConfigDict(extra="forbid")

    operation: Operation = Field(..., description="Which flow renders it: img2vid, caption or addaudio.")
    request_id: str = Field(
        ..., pattern=REQUEST_ID_PATTERN,
        description="Caller's id, unique in the manifest; keys the done marker, so a rerun skips it. "
        "Letters, digits, '.', '_' and '-', at most 128 characters.",
    )
    body: dict[str, Any] = Field(..., description="The operation's seed request body (its flow's parameters).")

    def body_sha256(self) -> str:
        """Hex SHA-256 of the body as canonical JSON (sorted keys): tells an unchanged request from an edited one."""
        canonical = json.dumps(self.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class BatchItem(BaseModel):
    """One request's outcome in a batch run (a row of ``batch-summary.json``)."""

    request_id: str = Field(..., description="The manifest's request_id.")
    operation: Operation = Field(..., description="The flow that rendered it.")
    status: Literal["rendered", "skipped", "failed", "invalid"] = Field(
        ..., description="rendered: this run, completely; skipped: done by an earlier run (done marker, same body); "
        "failed: the flow run failed or was partial; invalid: the body does not fit the flow's parameters.")
    code: int | None = Field(None, description="The flow's response code (200, 207, 422, 500); None when it never ran.")
    message: str = Field(..., description="The flow's message, or why the request was skipped or refused.")
    flow_run_id: str | None = Field(None, description="The subflow run that rendered it (this run or the earlier one).")
    keys: list[str] = Field(default_factory=list, description="Object keys of the delivered videos.")
    body_sha256: str = Field(..., description="SHA-256 of the request body (see BatchRequest.body_sha256).")


class BatchSummary(BaseModel):
    """The batch flow's result and ``batch-summary.json``: one item per manifest request, in manifest order."""

    code: int = Field(..., description="200 when every request is done (rendered now or before), 207 when some failed, "
                      "422 when all that ran failed on bad input or were invalid, 500 otherwise.")
    message: str = Field(..., description="E.g. '5 requests: 2 rendered, 3 skipped, 0 failed'.")
    manifest: str = Field(..., description="Where the manifest came from (URL without its query, path or key).")
    prefix: str = Field(..., description="Storage prefix holding batch-summary.json and done/.")
    summary_key: str = Field(..., description="Key of batch-summary.json in the storage.")
    items: list[BatchItem] = Field(..., description="One per request, manifest order.")
    stats: dict[str, int] = Field(..., description="Counts: total, rendered, skipped, failed, invalid.")
    execution: Execution = Field(..., description="Wall-clock span of the batch run (as the other flows).")


# -- manifest ----------------------------------------------------------------------------------------


def parse_manifest(data: bytes, *, source: str) -> list[BatchRequest]:
    """Parse a manifest: a JSON list of requests, or JSON Lines (one request object per non-blank line).

    Args:
        data: The manifest bytes (UTF-8).
        source: Where it came from, for messages.

    Returns:
        The requests in manifest order.

    Raises:
        RequestError: not UTF-8 JSON / JSON Lines, empty, over :data:`MAX_BATCH_REQUESTS`, an entry that is
            not a valid BatchRequest (field ``manifest[<n>].<field>``), or a duplicate request_id.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RequestError("manifest", f"{source} is not UTF-8 text") from None
    stripped = text.strip()
    entries: list[Any]
    if stripped.startswith("["):
        try:
            entries = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise RequestError("manifest", f"{source} is not valid JSON: {exc}") from None
    else:
        entries = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RequestError("manifest", f"{source} line {lineno} is not valid JSON: {exc.msg}") from None
    if not entries:
        raise RequestError("manifest", f"{source} holds no requests")
    if len(entries) > MAX_BATCH_REQUESTS:
        raise RequestError("manifest", f"{source} holds {len(entries)} requests, over the limit of {MAX_BATCH_REQUESTS}")
    requests: list[BatchRequest] = []
    seen: dict[str, int] = {}
    for n, entry in enumerate(entries):
        try:
            req = BatchRequest.model_validate(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise RequestError(f"manifest[{n}]{'.' + where if where else ''}", err["msg"]) from None
        if req.request_id in seen:
            raise RequestError(f"manifest[{n}].request_id",
                               f"{req.request_id!r} is also entry {seen[req.request_id]}; request ids must be unique")
        seen[req.request_id] = n
        requests.append(req)
    return requests


def describe_source(manifest: str) -> str:
    """The manifest reference as safe to log: a URL without its query (it may be presigned)."""
    return manifest.split("?", 1)[0] if manifest.startswith(("http://", "https://")) else manifest


def read_manifest(manifest: str, store: Storage) -> bytes:
    """The manifest's bytes, from an http(s) URL, a file, or a key in ``store``.

    ``http://`` / ``https://``: fetched (redirects followed). ``file://`` or an absolute path: that file.
    A relative reference is a file relative to the working directory when one exists there (the
    deployments run in the repo, so ``examples/batch_manifest.jsonl`` works), otherwise a key in the
    batch's storage (``<renders>/<key>`` locally, the object key in S3).

    Raises:
        RequestError: not found, unreadable, or over :data:`MAX_MANIFEST_BYTES` (field ``manifest``).
    """
    source = describe_source(manifest)
    if manifest.startswith(("http://", "https://")):
        try:
            with httpx.stream("GET", manifest, follow_redirects=True, timeout=httpx.Timeout(60.0, connect=10.0)) as resp:
                if resp.status_code != 200:
                    raise RequestError("manifest", f"{source} answered HTTP {resp.status_code}")
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_MANIFEST_BYTES:
                        raise RequestError("manifest", f"{source} is over {MAX_MANIFEST_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise RequestError("manifest", f"could not fetch {source}: {type(exc).__name__}") from None
    path: Path | None = None
    if manifest.startswith("file://"):
        path = Path(unquote(urlsplit(manifest).path))
    elif os.path.isabs(manifest) or Path(manifest).is_file():
        path = Path(manifest)
    if path is not None:
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise RequestError("manifest", f"{source} is over {MAX_MANIFEST_BYTES} bytes")
            return path.read_bytes()
        except OSError as exc:
            raise RequestError("manifest", f"cannot read {source}: {exc.strerror or exc}") from None
    data = read_object(store, manifest)
    if data is None:
        raise RequestError("manifest", f"{source!r} is not a URL, an existing file, nor a key in storage {store.name!r}")
    if len(data) > MAX_MANIFEST_BYTES:
        raise RequestError("manifest", f"{source} is over {MAX_MANIFEST_BYTES} bytes")
    return data


def default_prefix(manifest: str) -> str:
    """``batches/<manifest file name without extension>/``: where a batch keeps its state by default."""
    name = PurePosixPath(urlsplit(manifest).path if "://" in manifest else manifest).name
    stem = name.split(".", 1)[0] or "manifest"
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in stem)
    return f"batches/{safe}/"


def state_prefix(path: str | None, manifest: str) -> str:
    """The validated storage prefix of the batch's state (``path``, or :func:`default_prefix`).

    Raises:
        RequestError: ``path`` breaks the key rules (``tasks.keys.normalize_prefix``).
    """
    try:
        return normalize_prefix(path if path else default_prefix(manifest))
    except ValueError as exc:
        raise RequestError("path", str(exc)) from None


# -- state objects in storage -------------------------------------------------------------------------


def read_object(store: Storage, key: str) -> bytes | None:
    """The bytes at ``key`` in ``store``, or None when there is nothing there (or it cannot be read).

    Local storage reads ``<root>/<key>``; other storages need a ``read_bytes(key)`` method (S3 has one).
    A read error is logged and answered None: for a done marker that means "render again", the safe side.
    """
    if isinstance(store, LocalFolderStorage):
        try:
            path = store.path_for(key)
        except StorageError:
            return None
        return path.read_bytes() if path.is_file() else None
    reader = getattr(store, "read_bytes", None)
    if reader is None:
        log.warning("storage %s cannot read objects back; key %s treated as missing", store.name, key)
        return None
    try:
        return reader(key)
    except StorageError as exc:
        log.info("key %s not read from storage %s: %s", key, store.name, exc)
        return None


def write_object(store: Storage, key: str, data: bytes) -> None:
    """Write ``data`` at ``key`` atomically: a local temp file + ``os.replace``, or one presigned PUT (S3
    stores a single PUT atomically). Logs the key, never a URL.

    Raises:
        StorageError: the write failed.
    """
    from worker_image.contract import FileOutput
    from worker_image.errors import UploadError
    from worker_image.media_io import deliver_put

    target = store.target_for(key, expires_s=STATE_PUT_EXPIRY_S)
    if isinstance(target, FileOutput):
        dest = Path(target.path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, dest)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not write key {key!r}: {exc}") from None
        return
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        fh.write(data)
        fh.flush()
        try:
            deliver_put(Path(fh.name), target.url, key=key, timeout_s=60.0)
        except UploadError as exc:
            raise StorageError(f"could not write key {key!r}: {exc}") from None


def done_key(prefix: str, request_id: str) -> str:
    """Key of a request's done marker: ``<prefix>done/<request_id>.json``."""
    return f"{prefix}done/{request_id}.json"


def load_done(store: Storage, prefix: str, request: BatchRequest) -> dict[str, Any] | None:
    """The done marker of ``request`` when it exists and was written for the same body, else None."""
    data = read_object(store, done_key(prefix, request.request_id))
    if data is None:
        return None
    try:
        marker = json.loads(data)
    except ValueError:
        log.warning("done marker of %s is not JSON; rendering it again", request.request_id)
        return None
    if marker.get("body_sha256") != request.body_sha256():
        log.info("request %s changed since it was done; rendering it again", request.request_id)
        return None
    return marker


def mark_done(store: Storage, prefix: str, request: BatchRequest, item: BatchItem) -> None:
    """Write the done marker of a completely rendered request (its summary row as JSON).

    Raises:
        StorageError: the write failed.
    """
    write_object(store, done_key(prefix, request.request_id), item.model_dump_json(indent=2).encode("utf-8"))


def planned_output_keys(operation: str, body: dict[str, Any]) -> list[str]:
    """The storage keys a request will write, from its body alone (the flows' own key rules):
    ``<path>/video_1.mp4 ... video_N.mp4`` for img2vid, ``<path>/<output_filename>`` otherwise.
    Empty when the body is too broken to tell (its flow reports why)."""
    try:
        if operation == "img2vid":
            return [make_key(body.get("path", ""), clip_filename(i)) for i in range(1, len(body.get("images") or []) + 1)]
        return [make_key(body.get("path", ""), str(body.get("output_filename", "")))]
    except (InvalidKeyError, TypeError):
        return []


def output_keys(result: dict[str, Any]) -> list[str]:
    """Keys of the videos a flow's response reports: ``videos[].key`` (img2vid) or ``key`` (caption, addaudio)."""
    if isinstance(result.get("videos"), list):
        return [v["key"] for v in result["videos"] if isinstance(v, dict) and v.get("key")]
    return [result["key"]] if result.get("key") and result.get("video_url") else []
