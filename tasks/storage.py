"""Where outputs go: the storage a flow's ``storage`` parameter names.

``"local"`` (the embedded default) is a folder on this machine: ``$API_GPU_RENDERS_DIR`` or
``./renders``; outputs land at ``<root>/<key>`` and ``video_url`` is a ``file://`` URL. Any other name
is an ``S3OutputStorage`` block (``blocks.s3``) or a bare prefect-aws ``S3Bucket`` block; see
``tasks.storage_s3``.

Every storage answers four questions for a key: where the render job should deliver it
(:meth:`Storage.target_for`), whether what arrived is what the worker reported (:meth:`Storage.verify`),
what URL to hand back (:meth:`Storage.url_for`), and how to read it back for tests and merges.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal, Protocol

from worker_image.contract import FileOutput, PutUrlOutput

from .errors import StorageError

#: Environment variable naming the local renders folder (default ``./renders``, relative to the
#: working directory of the flow run).
RENDERS_DIR_ENV = "API_GPU_RENDERS_DIR"

UrlKind = Literal["file", "public", "presigned"]


class Storage(Protocol):
    """What the flows need from a storage backend."""

    name: str

    def target_for(self, key: str, *, expires_s: int) -> FileOutput | PutUrlOutput:
        """Where a render job delivers ``key`` (a local path, or a presigned PUT valid ``expires_s``)."""

    def verify(self, key: str, *, size_bytes: int, sha256: str) -> None:
        """Raise StorageError unless the object at ``key`` has this size and SHA-256."""

    def url_for(self, key: str) -> tuple[str, UrlKind]:
        """The URL handed back to callers for ``key`` and what kind of URL it is."""

    def accepts_local_inputs(self) -> bool:
        """Whether inputs may be local paths (true only where the renderer shares this machine)."""


class LocalFolderStorage:
    """Outputs in a local folder: ``<root>/<key>``; URLs are ``file://``.

    Args:
        root: The folder (created on first write). Relative paths resolve against the working directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.name = "local"

    def path_for(self, key: str) -> Path:
        """The absolute file path of ``key``; refuses keys that would escape the root.

        Raises:
            StorageError: the key resolves outside ``root``.
        """
        path = (self.root / key).resolve()
        if self.root != path and self.root not in path.parents:
            raise StorageError(f"key {key!r} escapes the renders folder {self.root}")
        return path

    def target_for(self, key: str, *, expires_s: int = 0) -> FileOutput:
        return FileOutput(path=str(self.path_for(key)))

    def verify(self, key: str, *, size_bytes: int, sha256: str) -> None:
        path = self.path_for(key)
        if not path.is_file():
            raise StorageError(f"key {key!r}: no file at {path} after the render reported success")
        actual_size = path.stat().st_size
        if actual_size != size_bytes:
            raise StorageError(f"key {key!r}: {actual_size} bytes on disk, the worker reported {size_bytes}")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise StorageError(f"key {key!r}: SHA-256 on disk differs from the worker's report")

    def url_for(self, key: str) -> tuple[str, UrlKind]:
        return self.path_for(key).as_uri(), "file"

    def accepts_local_inputs(self) -> bool:
        return True


def default_renders_dir() -> Path:
    """``$API_GPU_RENDERS_DIR`` or ``./renders``."""
    return Path(os.environ.get(RENDERS_DIR_ENV) or "renders")


def resolve_storage(name: str) -> Storage:
    """The storage a flow's ``storage`` parameter names: ``"local"``, or an S3OutputStorage / S3Bucket block name.

    Loads blocks from the Prefect API, so call it inside a flow run, not at import time.

    Raises:
        StorageError: the block does not exist or cannot be used.
    """
    if name in ("", "local"):
        return LocalFolderStorage(default_renders_dir())
    try:
        from .storage_s3 import S3Storage
    except ImportError as exc:  # pragma: no cover - the module ships with the package
        raise StorageError(f"storage {name!r}: S3 storage is not available ({exc})") from exc
    return S3Storage.load(name)
