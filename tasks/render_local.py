"""The local render backend: the worker_image engine, run in-process by Prefect tasks.

Concurrency is bounded by the flow's task runner (one thread per CPU, ``LOCAL_MAX_WORKERS``); each
clip's encoder is itself multi-threaded, so more would only queue on the same cores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from worker_image.contract import ClipJob, ClipResult, RenderSettings
from worker_image.engine import render_clip

from .backends import OnDone
from .retry import RETRY_DELAYS_S, is_transient

#: Clips rendered at once by the local backend: one per CPU.
LOCAL_MAX_WORKERS = max(1, os.cpu_count() or 1)


@task(
    name="render-clip-local",
    task_run_name="render {clip.filename} ({clip.id})",
    retries=len(RETRY_DELAYS_S),
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def render_clip_local(clip: ClipJob, settings: RenderSettings) -> ClipResult:
    """Render one Ken Burns clip on this machine and deliver it to ``clip.output``.

    Retried (2, 5, 15 s) only when the engine says the failure is transient (download timeouts,
    HTTP 408/429/5xx); bad input fails at once.

    Raises:
        worker_image.errors.RenderError: any engine failure, naming the clip id.
    """
    return render_clip(clip, settings, allow_local_inputs=True)


def map_as_completed(task_fn: Any, jobs: Sequence[Any], settings: Any, on_done: OnDone) -> None:
    """Fan ``task_fn(job, settings)`` out over ``jobs`` and report each outcome as it finishes."""
    futures = list(task_fn.map(list(jobs), unmapped(settings)))
    index_of = {id(f): i for i, f in enumerate(futures)}
    for future in as_completed(futures):
        try:
            outcome: Any = future.result()
        except Exception as exc:  # the job's typed failure is its outcome; the others go on
            outcome = exc
        on_done(index_of[id(future)], outcome)


class LocalBackend:
    """Backend ``"local"``: one Prefect task per job, run in this process."""

    name = "local"
    local_inputs_ok = True

    def __call__(self, jobs: Sequence[ClipJob], settings: RenderSettings, on_done: OnDone) -> None:
        map_as_completed(render_clip_local, jobs, settings, on_done)
