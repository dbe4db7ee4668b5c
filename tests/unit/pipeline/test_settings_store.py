"""The removed RocksDB store is refused with an error that says what to do."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.settings import Settings


@pytest.mark.parametrize("value", ["rocksdb", "RocksDB", " rocksdb "])
def test_rocksdb_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DYNASYNC_STORE", value)
    with pytest.raises(ValidationError, match="store=rocksdb was removed: link state is held"):
        Settings()


def test_memory_is_the_store_and_garbage_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().store == "memory"
    monkeypatch.setenv("DYNASYNC_STORE", "postgres")
    with pytest.raises(ValidationError, match="memory"):
        Settings()
