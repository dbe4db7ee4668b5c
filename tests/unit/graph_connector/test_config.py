"""Configuration of the Graph connector is validated with clear errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from connectors.errors import AuthError
from connectors.graph.receiver import ReceiverConfig
from connectors.graph.subscriptions import (
    ClientStateKey,
    SubscriptionManager,
    SubscriptionRecord,
    client_state_key,
)
from connectors.graph.transport import GraphTransport, token_provider
from connectors.store import MemoryCursorStore


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ReceiverConfig(topic=""), "topic"),
        (lambda: ReceiverConfig(topic="t", max_body_bytes=10), "max_body_bytes"),
        (lambda: ReceiverConfig(topic="t", publish_timeout_s=5), "publish_timeout_s"),
        (lambda: ReceiverConfig(topic="t", notifications_path="hook"), "path"),
        (lambda: ReceiverConfig(topic="t", lifecycle_path="/notifications"), "differ"),
        (lambda: ReceiverConfig(topic="t", notifications_path="/metrics"), "path"),
        (lambda: ReceiverConfig(topic="t", notifications_path="/a/../metrics"), "path"),
        (lambda: ReceiverConfig(topic="t", notifications_path="/a%2fb"), "path"),
        (lambda: ReceiverConfig(topic="t", notifications_path="//a"), "path"),
        (lambda: ReceiverConfig(topic="t", notifications_path="/a/"), "path"),
        (lambda: ReceiverConfig(topic="t", rate_per_s=0), "rate_per_s"),
        (lambda: ReceiverConfig(topic="t", rate_per_s=float("nan")), "rate_per_s"),
        (lambda: ReceiverConfig(topic="t", rate_burst=0), "rate_burst"),
        (lambda: ReceiverConfig(topic="t", max_sources=0), "max_sources"),
        (lambda: ReceiverConfig(topic="t", max_sources=10**9), "max_sources"),
        (lambda: ReceiverConfig(topic="t", log_interval_s=0.01), "log_interval_s"),
    ],
)
def test_bad_receiver_config(build: Callable[[], ReceiverConfig], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


async def _token() -> str:
    return "t"


@pytest.mark.parametrize("url", ["ftp://x", "graph.microsoft.com", "https://x/v1.0?a=1"])
async def test_bad_base_url(url: str) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="base URL"):
            GraphTransport(http, url, _token)


async def test_bad_subscription_lifetimes() -> None:
    async with httpx.AsyncClient() as http:
        t = GraphTransport(http, "https://graph.microsoft.com/v1.0", _token)
        for lifetime, renew in (
            (timedelta(days=8), timedelta(hours=1)),
            (timedelta(hours=1), timedelta(hours=2)),
        ):
            with pytest.raises(ValueError, match="lifetime"):
                SubscriptionManager(
                    t,
                    MemoryCursorStore(),
                    key=ClientStateKey(bytes(32)),
                    notification_url="https://h/n",
                    lifecycle_url="https://h/l",
                    lifetime=lifetime,
                    renew_before=renew,
                )


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "[]",
        "{}",
        '{"resource": "calendars", "mailbox_id": "m", "client_state": "s"}',
        '{"resource": "messages", "mailbox_id": 1, "client_state": "s"}',
        '{"resource": "messages", "mailbox_id": "m", "client_state": ""}',
        '{"resource": "messages", "mailbox_id": "m", "client_state_hmac": "ab", "key_id": "0"}',
        '{"resource": "messages", "mailbox_id": "m", "client_state_hmac": "%s"}' % ("a" * 64),
    ],
)
def test_garbage_subscription_records(raw: str) -> None:
    with pytest.raises(ValueError):
        SubscriptionRecord.from_json(raw, ClientStateKey(bytes(32)))


def test_client_state_key_sources() -> None:
    with pytest.raises(ValueError, match="client_state_key"):
        client_state_key(None, None, "")
    with pytest.raises(ValueError, match="32"):
        client_state_key("too short", "a-client-secret")
    with pytest.raises(ValueError, match="32 bytes"):
        ClientStateKey(b"short")
    configured = client_state_key("k" * 32, "a-client-secret")
    fallback = client_state_key(None, "a-client-secret")
    assert configured.key_id != fallback.key_id
    assert fallback.key_id == client_state_key(None, None, "a-client-secret").key_id
    assert "a-client-secret" not in repr(fallback)


class _Token:
    def __init__(self, token: object, expires: object) -> None:
        self.token = token
        self.expires_on = expires


class _SyncCredential:
    def __init__(self, token: object, expires: object = 4_000_000_000) -> None:
        self.calls = 0
        self._token = token
        self._expires = expires

    def get_token(self, *scopes: str) -> _Token:
        self.calls += 1
        return _Token(self._token, self._expires)


class _AsyncCredential:
    def __init__(self, token: object) -> None:
        self.inner = _SyncCredential(token)

    @property
    def calls(self) -> int:
        return self.inner.calls

    async def get_token(self, *scopes: str) -> _Token:
        return self.inner.get_token(*scopes)


async def test_token_provider_caches_and_rejects_garbage() -> None:
    creds: list[_SyncCredential | _AsyncCredential] = [
        _SyncCredential("abc"),
        _AsyncCredential("abc"),
    ]
    for cred in creds:
        provide = token_provider(cred)
        assert await provide() == "abc"
        assert await provide() == "abc"
        assert cred.calls == 1
    with pytest.raises(AuthError):
        await token_provider(_SyncCredential(None))()
    with pytest.raises(TypeError):
        token_provider(object())
