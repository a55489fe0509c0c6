"""Shared command line of the flows: ``python -m flows.<name> REQUEST.json``."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import unquote, urlsplit


def where(video_url: str) -> str:
    """Where a delivered video is, for people: its filesystem path for ``file://`` URLs, else the URL
    without its query (a presigned URL's signature is a credential and is never printed)."""
    parts = urlsplit(video_url)
    return unquote(parts.path) if parts.scheme == "file" else video_url.split("?", 1)[0]


def run_request_file(flow_fn: Any, name: str, argv: list[str] | None = None) -> int:
    """Run ``flow_fn`` on the seed-shaped request body in the JSON file ``argv[0]`` and print the result.

    Args:
        flow_fn: The Prefect flow (called with the body as keyword arguments).
        name: The module's operation name, for the usage line and messages (e.g. ``"caption"``).
        argv: Command-line arguments after the program name (``sys.argv[1:]`` when None).

    Returns:
        Exit status: 0 when every video was delivered, 1 when the run failed (or any item did), 2 on
        bad usage or a request body that is not valid parameters. After the JSON it prints where the videos are: the video's location for one-video
        flows, the folders holding them for img2vid.
    """
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print(f"usage: python -m flows.{name} REQUEST.json", file=sys.stderr)
        return 2
    try:
        with open(args[0], encoding="utf-8") as fh:
            body = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"{name}: cannot read the request body {args[0]}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(body, dict):
        print(f"{name}: the request body must be a JSON object, got {type(body).__name__}", file=sys.stderr)
        return 2
    try:
        state = flow_fn(**body, return_state=True)
    except Exception as exc:  # parameters that do not bind or validate: say which, no traceback
        print(f"{name}: invalid request: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        print(f"{name} failed: {result}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if result.get("video_url"):
        print(f"\nvideo is at: {where(result['video_url'])}")
    for folder in sorted({where(v["video_url"]).rsplit("/", 1)[0] for v in result.get("videos", [])}):
        print(f"\nvideos are in: {folder}")
    return 0 if state.is_completed() else 1
