"""``GET /_emulator/requests``: every request with its mailbox, times and the caller's
User-Agent; ``$batch`` members are logged one by one with their ``$batch``'s caller."""

from __future__ import annotations

from tests.contract.graph.conftest import Graph


async def test_requests_are_logged_with_their_caller_and_times(graph: Graph) -> None:
    ann = await graph.user("ann")
    agent = {"User-Agent": "Dynasync/1 (pid 4242)"}
    made = await graph.raw.post(
        f"{graph.api}/users/{ann}/contacts", json={"givenName": "A"}, headers=agent
    )
    assert made.status_code == 201, made.text
    batch = {
        "requests": [
            {"id": "1", "method": "GET", "url": f"/users/{ann}/contacts"},
            {
                "id": "2",
                "method": "POST",
                "url": f"/users/{ann}/contacts",
                "body": {"givenName": "B"},
                "headers": {"Content-Type": "application/json"},
            },
        ]
    }
    sent = await graph.raw.post(
        f"{graph.api}/$batch", json=batch, headers={"User-Agent": "other/2"}
    )
    assert sent.status_code == 200, sent.text
    log = (await graph.raw.get(f"{graph.root}/_emulator/requests?mailbox={ann}")).json()
    rows = [(r["method"], r["agent"], r["status"]) for r in log["value"]]
    assert rows == [
        ("POST", "Dynasync/1 (pid 4242)", 201),
        ("GET", "other/2", 200),
        ("POST", "other/2", 201),
    ]
    assert all(r["started"] <= r["ended"] for r in log["value"])
    assert (await graph.raw.post(f"{graph.root}/_emulator/reset")).status_code == 200
    assert (await graph.raw.get(f"{graph.root}/_emulator/requests")).json()["value"] == []
