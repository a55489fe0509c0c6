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


class RunPodAPIError(BackendError):
    """The RunPod HTTP API answered with an error or could not be reached.

    Args:
        message: What was asked and what came back (never the API key or a presigned URL).
        status_code: The HTTP status, or None when no answer arrived (connection refused, timeout).
        retryable: True for 408/429/5xx and transport failures (another try may succeed); False for
            other 4xx such as 401 (bad API key) or 404 (unknown endpoint or job).
    """

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = False) -> None:
        self.status_code, self.retryable = status_code, retryable
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_kw, (type(self), str(self), {"status_code": self.status_code, "retryable": self.retryable}))


class JobFailedError(BackendError):
    """A RunPod job ended FAILED (or vanished) instead of COMPLETED.

    ``retryable`` is False when the worker said the input was bad (a structured error with
    ``retryable: false``); True for crashes, lost workers and errors the worker marked transient.

    Args:
        message: The worker's error message (or a description of what went wrong).
        job_id: The RunPod job id.
        error_type: The worker's error class name when it sent a structured error, else None.
        retryable: Whether submitting the same clips again may succeed.
    """

    def __init__(self, message: str, *, job_id: str | None = None, error_type: str | None = None,
                 retryable: bool = False) -> None:
        self.job_id, self.error_type, self.retryable = job_id, error_type, retryable
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_kw, (type(self), str(self), {"job_id": self.job_id, "error_type": self.error_type,
                                                       "retryable": self.retryable}))


class JobTimedOutError(JobFailedError):
    """A RunPod job ran past its execution timeout (status TIMED_OUT) or past our overall deadline.
    Retryable: the backend resubmits its clips in smaller chunks."""


class JobCancelledError(JobFailedError):
    """A RunPod job was CANCELLED by someone other than this flow run (e.g. in the RunPod console)."""


def _rebuild_kw(cls: type, message: str, kwargs: dict) -> Exception:
    return cls(message, **kwargs)


class JobAbandonedError(JobFailedError):
    """This flow run stopped waiting for a RunPod job (it is being cancelled or shut down). The job itself
    may still be running: the flow's ``on_cancellation`` hook cancels it."""
