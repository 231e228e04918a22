"""Fixtures for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pynetdicom import _config


@pytest.fixture
def raw_sender() -> Iterator[None]:
    """Make pynetdicom send files' bytes as they are (no decode/re-encode, own transfer syntax),
    as a broken or exotic device would."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
