"""Fixtures of the block tests: a real S3 endpoint on 127.0.0.1 (see ``tests/s3_endpoint.py``)."""

from __future__ import annotations

import pytest

from tests.s3_endpoint import s3_endpoint_fixture

s3_endpoint = pytest.fixture(scope="session")(s3_endpoint_fixture)
