"""Retry policy shared by the render tasks: retry what may heal, never bad input."""

from __future__ import annotations

from typing import Any

import httpx

from worker_image.errors import RenderError

#: Delays between task retries, seconds: quick first retry, then back off (a flaky origin or a
#: briefly overloaded endpoint usually recovers within ~20 s).
RETRY_DELAYS_S = [2, 5, 15]


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: True only for failures that another try may fix.

    Engine errors say so themselves (``RenderError.retryable``: timeouts, resets, HTTP 408/429/5xx);
    httpx transport errors are transient; everything else (bad input, a bug) is final.
    """
    try:
        state.result()
    except RenderError as err:
        return err.retryable
    except (httpx.TransportError, ConnectionError, TimeoutError):
        return True
    except BaseException:
        return False
    return False
