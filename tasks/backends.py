"""Render backends: how a flow's planned jobs get rendered, behind one call shape.

A backend is a callable ``(jobs, settings, on_done) -> None`` that renders every job and calls
``on_done(index, outcome)`` once per job as it finishes (any order), where ``outcome`` is the engine's
result model or the exception that failed that job. ``on_done`` is called from the thread that
called the backend (the flow's), so it may update plain dicts and artifacts without locks. It must be called inside a flow run (backends
fan out Prefect tasks). Results are merged in request order by the caller.

``jobs`` are engine job models of one kind: ``ClipJob`` (img2vid; ``settings`` is the request's
``RenderSettings``), ``CaptionJob`` or ``AddAudioJob`` (one job per flow run; ``settings`` is None, the
job carries its own options). A backend may declare which operations it renders in an optional
``operations`` attribute (a set of ``"img2vid"``, ``"caption"``, ``"addaudio"``); a backend without it
is taken to render img2vid only, and :func:`require_operation` refuses it for the others before any
job is planned.

``"local"`` runs the worker_image engine in-process (``tasks.render_local``). Any other name is a
``RunPodEndpoint`` block (``tasks.render_runpod``), when that module is present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .errors import BackendError, RequestError

OnDone = Callable[[int, Any], None]


class Backend(Protocol):
    """Renders jobs and reports each outcome through ``on_done``."""

    name: str
    #: Whether inputs may be local file paths (only where the renderer shares this machine).
    local_inputs_ok: bool
    #: Seconds a presigned PUT target must stay valid for a job planned now to deliver through it.
    upload_expiry_s: int

    def __call__(self, jobs: Sequence[Any], settings: Any, on_done: OnDone) -> None: ...


def resolve_backend(name: str) -> Backend:
    """The backend a flow's ``backend`` parameter names: ``"local"`` or a RunPodEndpoint block name.

    Raises:
        RequestError: (field ``backend``) the name is unknown or its block cannot be loaded.
    """
    if name in ("", "local"):
        from .render_local import LocalBackend

        return LocalBackend()
    try:
        from .render_runpod import RunPodBackend
    except ImportError:
        raise RequestError("backend", f"unknown backend {name!r}; available: 'local'") from None
    return RunPodBackend.load(name)


#: Operations a backend renders when it does not say (backends written before caption and addaudio).
DEFAULT_OPERATIONS = frozenset({"img2vid"})


def require_operation(backend: Backend, operation: str) -> None:
    """Refuse a backend that does not render ``operation`` (``"img2vid"``, ``"caption"``, ``"addaudio"``).

    Reads the backend's optional ``operations`` attribute (default: img2vid only).

    Raises:
        RequestError: (field ``backend``) the backend does not render this operation.
    """
    operations = getattr(backend, "operations", DEFAULT_OPERATIONS)
    if operation not in operations:
        raise RequestError("backend", f"backend {getattr(backend, 'name', '?')!r} does not render {operation} jobs "
                                      f"(it renders: {', '.join(sorted(operations))}); use 'local'")


def render_one(backend: Backend, job: Any, settings: Any = None) -> Any:
    """Render a single job on ``backend`` (inside a flow run) and return its outcome.

    Returns:
        The engine's result model, or the exception that failed the job (returned, not raised, so the
        flow can put it in its response).
    """
    outcomes: list[Any] = []
    backend([job], settings, lambda _index, outcome: outcomes.append(outcome))
    if len(outcomes) != 1:
        return BackendError(f"backend {getattr(backend, 'name', '?')!r} reported {len(outcomes)} outcomes for one job")
    return outcomes[0]
