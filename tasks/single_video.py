"""Finishing a one-video flow (caption, addaudio): verify in storage, answer, publish, pick the state.

Both flows render one job; what differs is only which measured facts go into the response and the
one-line summary, so they pass those in and share everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from .planning import PlannedJob
from .reporting import publish_result, publish_table
from .responses import Execution, SingleVideoResponse, Stats, as_json, error_info, failure_code, now_utc
from .storage import Storage


def finish_single_video(
    *,
    operation: str,
    planned: PlannedJob,
    outcome: Any,
    store: Storage,
    started: datetime,
    response_model: type[SingleVideoResponse],
    facts: Callable[[Any], dict[str, Any]],
    summary: Callable[[Any], str],
    table_columns: Sequence[str] = (),
) -> State:
    """Turn one render outcome into the flow's final state, response and artifacts.

    Args:
        operation: Flow name ("caption", "addaudio"): used in messages and artifact keys
            (``<operation>-table``, ``<operation>-result``).
        planned: The planned job and its storage key.
        outcome: The engine's result model, or the exception that failed the job.
        store: Where the output was delivered; the object is verified there (size and SHA-256).
        started: When the flow run started (for ``execution``).
        response_model: The response class to fill.
        facts: ``result -> {field: value}``: measured facts copied into the response.
        summary: ``result -> str``: the success message.
        table_columns: Response fields shown in the table artifact besides filename, key, duration,
            size and URL.

    Returns:
        Completed carrying the response dict when the video was delivered and verified; Failed carrying
        it (code 422 for bad input, 500 otherwise, with the typed error) when not.
    """
    logger = get_run_logger()
    measured: dict[str, Any] = {}
    error = None
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        store.verify(planned.key, size_bytes=outcome.size_bytes, sha256=outcome.sha256)
        video_url, url_kind = store.url_for(planned.key)
        measured = {"video_url": video_url, "url_kind": url_kind, **facts(outcome)}
        code, message = 200, summary(outcome)
    except Exception as exc:  # the job's typed failure goes into the response
        error = error_info(exc)
        code, message = failure_code(error), f"{operation} failed: {error.type}: {error.message}"
        logger.warning("%s to key %s failed: %s", operation, planned.key, message)

    response = response_model(
        code=code, message=message, filename=planned.job.filename, key=planned.key, error=error, **measured,
        execution=Execution.between(started, now_utc()),
        stats=Stats(jobId=str(flow_run.id or ""), total=1, processed=int(error is None), failed=int(error is not None)),
    )
    body = as_json(response)
    publish_table(
        [{"filename": response.filename, "key": response.key, "duration_s": response.duration_s,
          **{column: getattr(response, column) for column in table_columns}, "size_bytes": response.size_bytes,
          "url": response.video_url if error is None else f"FAILED: {error.type}: {error.message}"}],
        key=f"{operation}-table", description=f"{operation}: {message}",
    )
    publish_result(body, key=f"{operation}-result")
    logger.info("%s: %s", operation, message)
    return Failed(message=message, data=body) if error is not None else Completed(message=message, data=body)
