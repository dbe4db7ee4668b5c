"""Every Kafka client Dynasync opens is closed on every path, also when the broker cannot be
reached (a config reload every 5 s used to leave an "Unclosed AIOKafkaConsumer" each time)."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from pipeline.cli.demo_watch import wait_for_readers
from pipeline.cli.topics import ensure_topics
from pipeline.config_store import ConfigStore
from pipeline.dlq import Selection, list_dlq, replay
from pipeline.settings import KafkaSettings
from tests.ports import free_port


def _unreachable() -> KafkaSettings:
    return KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there


async def _reload(kafka: KafkaSettings) -> object:
    return await ConfigStore(kafka, timeout_s=2).load()


async def _open_store(kafka: KafkaSettings) -> object:
    async with ConfigStore(kafka, timeout_s=2) as store:
        return store.snapshot


async def _list_dlq(kafka: KafkaSettings) -> object:
    return await list_dlq(kafka, Selection(), timeout_s=2)


async def _replay(kafka: KafkaSettings) -> object:
    return await replay(kafka, "dynasync-test", Selection(), timeout_s=2)


async def _topics(kafka: KafkaSettings) -> object:
    return await ensure_topics(kafka, timeout_ms=2000)


async def _watch(kafka: KafkaSettings) -> object:
    return await wait_for_readers(kafka, ["m1"], 1.0)


@pytest.mark.parametrize(
    "attempt",
    [_reload, _open_store, _list_dlq, _replay, _topics, _watch],
    ids=["config-reload", "config-store", "dlq-list", "dlq-replay", "topics", "demo-watch"],
)
async def test_a_failed_connect_leaves_no_unclosed_client(
    attempt: Callable[[KafkaSettings], Awaitable[object]],
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[str] = []

    def handler(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        reported.append(str(context.get("message")))

    loop.set_exception_handler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            error: BaseException | None = None
            try:
                await attempt(_unreachable())
            except KafkaConnectionError as exc:
                error = exc
            assert error is not None, "the attempt should fail: nothing listens on that port"
            assert "Unable to bootstrap" in str(error)
            error = None  # drop the traceback, and with it the frames holding the clients
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
    assert [m for m in reported if "Unclosed" in m] == []
