"""Prefect UI artifacts: a progress bar updated as items finish, a per-item table, and the result JSON.

Artifact keys must be lowercase letters, digits and dashes (Prefect's rule); we key them by operation,
so the UI's Artifacts page shows each operation's latest table and its history.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

log = logging.getLogger(__name__)


class ProgressReporter:
    """A progress artifact (0-100 %) for ``total`` items; :meth:`advance` after each one finishes.

    Artifact failures (e.g. an API hiccup) are logged, never raised: progress must not fail a render.
    """

    def __init__(self, total: int, *, key: str, what: str) -> None:
        self.total, self.done, self.what = max(total, 1), 0, what
        self.artifact_id: UUID | None = None
        try:
            self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=f"{what}: 0 of {total} done")
        except Exception as exc:  # pragma: no cover - depends on the API being reachable
            log.warning("could not create progress artifact: %s", exc)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items as finished and update the artifact."""
        self.done = min(self.done + n, self.total)
        if self.artifact_id is None:
            return
        try:
            update_progress_artifact(self.artifact_id, progress=100.0 * self.done / self.total,
                                     description=f"{self.what}: {self.done} of {self.total} done")
        except Exception as exc:  # pragma: no cover
            log.warning("could not update progress artifact: %s", exc)


def publish_table(rows: list[dict[str, Any]], *, key: str, description: str) -> None:
    """A table artifact, one row per item (columns are the dict keys of the first row)."""
    if rows:
        create_table_artifact(table=rows, key=key, description=description)


def publish_result(result: dict[str, Any], *, key: str) -> None:
    """The response JSON as a markdown artifact, so a caller with only Prefect's REST API can read it
    (``GET /api/artifacts/filter`` by flow run id). Holds URLs we hand back anyway, never secrets."""
    body = json.dumps(result, indent=2, ensure_ascii=False)
    create_markdown_artifact(markdown=f"```json\n{body}\n```", key=key, description="Result JSON of this run")
