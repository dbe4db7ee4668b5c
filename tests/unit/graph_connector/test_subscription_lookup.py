"""The receiver's subscription lookup reads the one record a notification names; an unknown id
rescans the store at most every ``rescan_every_s`` (it scanned every record for every
notification: 30 % of a worker's time at 50 mailboxes)."""

from __future__ import annotations

from connectors.graph.subscriptions import (
    ClientStateKey,
    SubscriptionRecord,
    SubscriptionRegistry,
    subscription_key,
)
from connectors.store import MemoryCursorStore

KEY = ClientStateKey.derive("unit-test client state key, 32+ chars long")


class CountingStore(MemoryCursorStore):
    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    def items(self, prefix: str = "") -> list[tuple[str, str]]:
        self.scans += 1
        return super().items(prefix)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _store(store: MemoryCursorStore, mailbox: str, sid: str | None) -> None:
    rec = SubscriptionRecord(mailbox, "messages", KEY.digest("state"), KEY.key_id, sid)
    await store.put(subscription_key(mailbox, "messages"), rec.to_json())


async def test_lookups_read_one_record_and_unknown_ids_rescan_rarely() -> None:
    store, clock = CountingStore(), Clock()
    for n in range(50):
        await _store(store, f"m{n}", f"sub-{n}")
    await _store(store, "pending", None)  # being created: no id yet
    registry = SubscriptionRegistry(store, KEY, rescan_every_s=0.5, clock=clock)
    found = registry.lookup("sub-7")
    assert found is not None and found.mailbox_id == "m7"
    for n in range(50):
        rec = registry.lookup(f"sub-{n}")
        assert rec is not None and rec.mailbox_id == f"m{n}"
    assert store.scans == 1
    for _ in range(100):  # garbage ids: no scan each
        assert registry.lookup("nonsense") is None
    assert store.scans == 1
    await _store(store, "new", "sub-new")  # made since the scan
    assert registry.lookup("sub-new") is None  # within the rescan interval
    clock.now += 0.6
    new = registry.lookup("sub-new")
    assert new is not None and new.mailbox_id == "new" and store.scans == 2
    await _store(store, "m3", "sub-3b")  # recreated: the old id is no longer ours
    assert registry.lookup("sub-3") is None
