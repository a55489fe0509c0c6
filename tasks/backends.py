"""Render backends: how a flow's planned jobs get rendered, behind one call shape.

A backend is a callable ``(jobs, settings, on_done) -> None`` that renders every job and calls
``on_done(index, outcome)`` once per job as it finishes (any order), where ``outcome`` is the engine's
result model or the exception that failed that job. ``on_done`` is called from the thread that
called the backend (the flow's), so it may update plain dicts and artifacts without locks. It must be called inside a flow run (backends
fan out Prefect tasks). Results are merged in request order by the caller.

``"local"`` runs the worker_image engine in-process (``tasks.render_local``). Any other name is a
``RunPodEndpoint`` block (``tasks.render_runpod``), when that module is present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .errors import RequestError

OnDone = Callable[[int, Any], None]


class Backend(Protocol):
    """Renders jobs and reports each outcome through ``on_done``."""

    name: str
    #: Whether inputs may be local file paths (only where the renderer shares this machine).
    local_inputs_ok: bool

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
