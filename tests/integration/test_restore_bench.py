"""``bench.restore`` on the real broker: a worker's engine, started afresh in a new process,
recovers every link and index key written to its changelog topics."""

from __future__ import annotations

import pytest

from bench.restore import RestoreParams, run

pytestmark = pytest.mark.kafka


async def test_a_restarted_engine_recovers_every_link(kafka_bootstrap: str) -> None:
    figures = await run(RestoreParams(links=300, mailboxes=7, runs=1, bootstrap=kafka_bootstrap))
    # restart() waits until the engine reports every written key restored (else it times out)
    assert (figures["links"], figures["index_keys"]) == (300, 300)
    restarts = figures["restarts"]
    assert isinstance(restarts, list) and len(restarts) == 1
    assert 0 < restarts[0]["start_to_restored_s"] < 60
    assert restarts[0]["rss_restored_mib"] > 0
