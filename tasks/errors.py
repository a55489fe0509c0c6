"""The orchestrator's error hierarchy (the engine has its own in ``worker_image.errors``).

``OrchestrationError`` → ``RequestError`` (the request is wrong: never retried), ``StorageError``
(the storage backend refused or lost an object), ``BackendError`` (a render backend misbehaved).
"""

from __future__ import annotations


class OrchestrationError(Exception):
    """Base of every orchestrator-side error."""


class RequestError(OrchestrationError, ValueError):
    """The flow's parameters are invalid. ``field`` names the parameter at fault.

    Args:
        field: Dotted parameter path, e.g. ``"path"`` or ``"images.img-3.image_url"``.
        reason: Why it is invalid, complete on its own.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")

    def __reduce__(self):
        return (type(self), (self.field, self.reason))


class InvalidKeyError(ValueError):
    """A path, file name or object key breaks the key rules (``tasks.keys``); the message says which."""


class StorageError(OrchestrationError):
    """Storage refused, lost or mismatched an object (e.g. the size or checksum differs from the worker's)."""


class BackendError(OrchestrationError):
    """A render backend failed in a way that is not one item's fault (misconfigured, unreachable)."""
