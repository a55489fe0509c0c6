"""The local render backend: the worker_image engine, run in-process by Prefect tasks.

One task per operation (``render_clip_local``, ``render_caption_local``, ``render_addaudio_local``),
all with the same failure policy; :class:`LocalBackend` picks the task from the jobs' model type.
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

from worker_image.addaudio import render_addaudio
from worker_image.caption import render_caption
from worker_image.contract import (
    AddAudioJob,
    AddAudioResult,
    CaptionJob,
    CaptionResult,
    ClipJob,
    ClipResult,
    RenderSettings,
)
from worker_image.engine import render_clip

from .backends import OnDone
from .errors import BackendError
from .planning import DEFAULT_UPLOAD_EXPIRY_S
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


@task(
    name="render-caption-local",
    task_run_name="caption {job.filename}",
    retries=len(RETRY_DELAYS_S),
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def render_caption_local(job: CaptionJob) -> CaptionResult:
    """Burn one subtitle file into one video on this machine and deliver it to ``job.output``.

    Same policy as :func:`render_clip_local`: retried (2, 5, 15 s) only for transient failures.

    Raises:
        worker_image.errors.RenderError: any engine failure, naming ``job.id`` and the field at fault
            (``url_video``, ``url_srt``, ``style.font_family``).
    """
    return render_caption(job, allow_local_inputs=True)


@task(
    name="render-addaudio-local",
    task_run_name="addaudio {job.filename}",
    retries=len(RETRY_DELAYS_S),
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def render_addaudio_local(job: AddAudioJob) -> AddAudioResult:
    """Put one audio file on one video on this machine and deliver it to ``job.output``.

    Same policy as :func:`render_clip_local`: retried (2, 5, 15 s) only for transient failures.

    Raises:
        worker_image.errors.RenderError: any engine failure, naming ``job.filename`` and the field at
            fault (``url_video``, ``url_audio``).
    """
    return render_addaudio(job, allow_local_inputs=True)


#: The local task for each job model, and whether it takes the flow's shared ``settings``.
LOCAL_TASKS: dict[type, tuple[Any, bool]] = {
    ClipJob: (render_clip_local, True),
    CaptionJob: (render_caption_local, False),
    AddAudioJob: (render_addaudio_local, False),
}


def map_as_completed(task_fn: Any, jobs: Sequence[Any], settings: Any, on_done: OnDone) -> None:
    """Fan ``task_fn`` out over ``jobs`` and report each outcome as it finishes.

    Args:
        task_fn: A Prefect task taking ``(job, settings)``, or ``(job)`` alone when ``settings`` is None.
        jobs: The jobs, in request order; ``on_done`` receives indices into this sequence.
        settings: Shared second argument (``unmapped``), or None for tasks that take only the job.
        on_done: Called ``(index, result | exception)`` once per job, from this thread.
    """
    shared = [] if settings is None else [unmapped(settings)]
    futures = list(task_fn.map(list(jobs), *shared))
    index_of = {id(f): i for i, f in enumerate(futures)}
    for future in as_completed(futures):
        try:
            outcome: Any = future.result()
        except Exception as exc:  # the job's typed failure is its outcome; the others go on
            outcome = exc
        on_done(index_of[id(future)], outcome)


class LocalBackend:
    """Backend ``"local"``: one Prefect task per job, run in this process.

    The task follows the jobs' model: ``ClipJob`` -> :func:`render_clip_local` (with the flow's
    ``RenderSettings``), ``CaptionJob`` -> :func:`render_caption_local`, ``AddAudioJob`` ->
    :func:`render_addaudio_local` (``settings`` is ignored: those jobs carry their own).
    """

    name = "local"
    local_inputs_ok = True
    #: Presigned PUT lifetime for outputs rendered here: the render starts at once, so the planning
    #: default (1 h) covers it.
    upload_expiry_s = DEFAULT_UPLOAD_EXPIRY_S
    #: Job operations this backend renders (see ``tasks.backends.require_operation``).
    operations = frozenset({"img2vid", "caption", "addaudio"})

    def __call__(self, jobs: Sequence[ClipJob | CaptionJob | AddAudioJob], settings: RenderSettings | None,
                 on_done: OnDone) -> None:
        """Render ``jobs`` (all of one model) and report each outcome through ``on_done``.

        Raises:
            BackendError: the jobs mix models, are of a model with no local task, or are ClipJobs
                without settings.
        """
        kinds = {type(job) for job in jobs}
        if not kinds:
            return
        if len(kinds) > 1 or next(iter(kinds)) not in LOCAL_TASKS:
            raise BackendError(f"local backend: cannot render jobs of type {sorted(k.__name__ for k in kinds)}")
        task_fn, takes_settings = LOCAL_TASKS[kinds.pop()]
        if takes_settings and settings is None:
            raise BackendError("local backend: Ken Burns clips need RenderSettings, got None")
        map_as_completed(task_fn, jobs, settings if takes_settings else None, on_done)
