"""The ``world`` fixture: both emulators, fresh topics and one registered mailbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.world import World, open_world


@pytest.fixture
async def world(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[World]:
    async with open_world(kafka_bootstrap, tmp_path) as w:
        yield w
