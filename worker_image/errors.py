"""The render engine's error hierarchy.

Every failure the engine raises is a :class:`RenderError`. Each one knows whether retrying the same
job could succeed (``retryable``) and, for bad input, which item and which field caused it. The RunPod
handler turns them into ``{"error": {"type", "message", "retryable", ...}}`` with :meth:`to_payload`;
the local backend lets them propagate to the Prefect task, whose retry policy reads ``retryable``.
"""

from __future__ import annotations

from typing import Any


class RenderError(Exception):
    """Base of every engine error.

    Args:
        message: Human-readable reason, complete on its own (never just "see stderr").
        item_id: The request item (image id, video) the error is about, if any.
        field: The request field at fault, e.g. ``"image_url"`` or ``"duration_s"``, if any.
        retryable: Whether the same job may succeed if tried again (network blips, 5xx).
    """

    retryable_default = False

    def __init__(
        self,
        message: str,
        *,
        item_id: str | None = None,
        field: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.message = message
        self.item_id = item_id
        self.field = field
        self.retryable = self.retryable_default if retryable is None else retryable
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.item_id is not None:
            where.append(f"item {self.item_id!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def __reduce__(self):  # keep keyword-only state through pickling (Prefect results, processes)
        return (_rebuild, (type(self), self.__dict__.copy()))

    def for_item(self, item_id: str) -> "RenderError":
        """Attach ``item_id`` when the error does not name an item yet; returns self (for ``raise``)."""
        if self.item_id is None:
            self.item_id = item_id
            self.args = (self._render(),)
        return self

    def to_payload(self) -> dict[str, Any]:
        """The JSON-safe error object of the job contract: type, message, retryable, item_id, field."""
        return {
            "type": type(self).__name__,
            "message": str(self),
            "retryable": self.retryable,
            "item_id": self.item_id,
            "field": self.field,
        }


def _rebuild(cls: type[RenderError], state: dict[str, Any]) -> RenderError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err._render())
    return err


class InputError(RenderError):
    """The request or its media is bad (out of bounds, not an image, too large). Never retried."""


class DownloadError(RenderError):
    """An input could not be fetched. ``retryable`` is True for timeouts, resets, 429 and 5xx; False
    for 4xx answers such as 404 (a dead link does not come back by asking again)."""


class FFmpegError(RenderError):
    """FFmpeg or ffprobe exited non-zero or timed out.

    Args:
        argv: The command that ran (list of strings; contains only names we chose, never secrets).
        returncode: Its exit status (None when it was killed on timeout).
        stderr_tail: The last lines of its stderr (run with ``-loglevel error``, so this is the cause).
    """

    retryable_default = False

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stderr_tail: str = "",
        **kwargs: Any,
    ) -> None:
        self.argv = list(argv or [])
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        if stderr_tail:
            message = f"{message} (ffmpeg said: {stderr_tail.strip()})"
        super().__init__(message, **kwargs)


class OutputVerificationError(RenderError):
    """The encoded file did not have the promised properties (frame count, codec, pix_fmt, ...)."""


class UploadError(RenderError):
    """The output could not be delivered to its destination (presigned PUT or local folder)."""


def unexpected(exc: BaseException, *, item_id: str | None = None) -> RenderError:
    """A typed, final error for an exception the engine did not anticipate (a bug or an unforeseen
    failure), so no caller ever has to handle anything but RenderError; the original is its cause."""
    err = RenderError(f"unexpected {type(exc).__name__}: {exc}", item_id=item_id, retryable=False)
    err.__cause__ = exc
    return err


ERROR_TYPES: dict[str, type[RenderError]] = {
    cls.__name__: cls
    for cls in (RenderError, InputError, DownloadError, FFmpegError, OutputVerificationError, UploadError)
}


def error_from_payload(payload: dict[str, Any]) -> RenderError:
    """Rebuild an engine error from :meth:`RenderError.to_payload` output (e.g. a RunPod job result).

    Unknown ``type`` values map to :class:`RenderError`. The message is kept as sent.
    """
    cls = ERROR_TYPES.get(str(payload.get("type")), RenderError)
    err = cls.__new__(cls)
    err.message = str(payload.get("message", ""))
    err.item_id = payload.get("item_id")
    err.field = payload.get("field")
    err.retryable = bool(payload.get("retryable", False))
    if isinstance(err, FFmpegError):
        err.argv, err.returncode, err.stderr_tail = [], None, ""
    Exception.__init__(err, err.message)
    return err
