"""Both services' credentials, every kind, through azure-identity's real classes against a local
token endpoint (tests/unit/connectors/token_server.py): the token asked for has the right scope,
the Graph and Dataverse emulators see ``Authorization: Bearer <that token>``, a token near its
expiry is replaced before it expires, and no token or secret reaches the logs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.core.credentials import AccessTokenInfo, TokenRequestOptions
from pydantic import SecretStr, ValidationError

from connectors.credentials import (
    CredentialConfig,
    CredentialError,
    TokenSource,
    build_credential,
)
from connectors.errors import AuthError
from connectors.graph.credentials import GRAPH_SCOPE
from emulators.dataverse import EmulatorConfig as DataverseConfig
from emulators.dataverse import create_app as dataverse_app
from emulators.graph import EmulatorConfig as GraphConfig
from emulators.graph import create_app as graph_app
from pipeline.credentials import credential_config
from pipeline.settings import DataverseSettings, GraphSettings, Settings
from pipeline.sinks import Connections
from schemas.models import Organisation
from tests.unit.connectors.token_server import CLIENT_ID, TENANT, TokenServer

KINDS = ("client_secret", "certificate", "managed_identity", "workload_identity")
AZURE_ENV = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


@dataclass
class Service:
    """An emulator in-process, with the Authorization headers of its API requests."""

    server: TestServer
    seen: list[str] = field(default_factory=list)

    @property
    def root(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


async def _serve(app: web.Application, prefix: str) -> Service:
    service: Service

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(prefix):
            service.seen.append(request.headers.get("Authorization", ""))
        return await handler(request)

    app.middlewares.insert(0, record)
    service = Service(TestServer(app, host="127.0.0.1"))
    await service.server.start_server()
    return service


@dataclass
class World:
    tokens: TokenServer
    graph: Service
    dataverse: Service

    @property
    def dataverse_scope(self) -> str:
        return f"{self.dataverse.root}/.default"

    def settings(self, kind: str) -> tuple[GraphSettings, DataverseSettings]:
        """Both services' settings for a credential of ``kind`` at the local endpoints."""
        values: dict[str, Any] = {"credential": kind}
        if kind != "managed_identity":
            values |= {
                "tenant_id": TENANT,
                "client_id": CLIENT_ID,
                "authority": self.tokens.authority,
            }
        if kind == "client_secret":
            values["client_secret"] = SecretStr(self.tokens.client_secret)
        elif kind == "certificate":
            values["certificate_path"] = self.tokens.client_certificate_file
        elif kind == "workload_identity":
            values["federated_token_file"] = self.tokens.federated_token_file
        graph = GraphSettings(base_url=f"{self.graph.root}/v1.0", **values)
        return graph, DataverseSettings(**values)

    def connections(self, kind: str) -> Connections:
        graph, dataverse = self.settings(kind)
        org = Organisation(org_id="contoso", url=self.dataverse.root)
        return Connections(
            graph,
            dataverse,
            {"contoso": org},
            credential_options={"connection_verify": str(self.tokens.ca_file)},
        )

    def secrets(self) -> list[str]:
        """What must never be logged: every token issued, and every secret."""
        pem = self.tokens.client_certificate_file.read_text().splitlines()
        key_lines = [line for line in pem if line and not line.startswith("-----")][:3]
        return [
            *(i.token for i in self.tokens.issued),
            self.tokens.client_secret,
            self.tokens.federated_token,
            self.tokens.identity_header,
            *key_lines,
        ]


def _scope(kind: str, scope: str) -> str:
    """The scope as the token endpoint sees it (a managed identity asks for a resource)."""
    return scope.removesuffix("/.default") if kind == "managed_identity" else scope


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    tokens = TokenServer(tmp_path / "entra")
    await tokens.start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", tokens.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", tokens.identity_header)
    accepted = frozenset(tokens.pool)
    graph = await _serve(graph_app(GraphConfig(accepted_tokens=accepted)), "/v1.0/")
    dataverse = await _serve(dataverse_app(DataverseConfig(accepted_tokens=accepted)), "/api/data/")
    try:
        yield World(tokens, graph, dataverse)
    finally:
        await graph.server.close()
        await dataverse.server.close()
        await tokens.stop()


async def _call_both(connections: Connections) -> None:
    await connections.transport.request("m1", "GET", "users")
    client = await connections.dataverse("contoso")
    await client.get_json("WhoAmI")


@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_gets_a_token_of_each_scope_and_the_services_see_it(
    world: World, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with world.connections(kind) as connections:
        await _call_both(connections)
        await _call_both(connections)  # the held tokens are used again, none asked for
    graph_tokens = world.tokens.tokens_for(kind, _scope(kind, GRAPH_SCOPE))
    dv_tokens = world.tokens.tokens_for(kind, _scope(kind, world.dataverse_scope))
    assert len(graph_tokens) == 1 and len(dv_tokens) == 1, world.tokens.issued
    assert len(world.tokens.issued) == 2 and world.tokens.refused == []
    assert world.graph.seen == [f"Bearer {graph_tokens[0]}"] * 2
    assert world.dataverse.seen == [f"Bearer {dv_tokens[0]}"] * 2
    logged = caplog.text
    assert "azure.identity" in logged  # azure-identity's own lines were captured too
    for secret in world.secrets():
        assert secret not in logged


async def test_a_token_near_expiry_is_replaced_before_it_expires(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens live 330 s: 31 s later each is within 5 minutes of expiry and azure-identity's
    30 s between requests has passed, so the next request of every kind and service goes out
    with a new token while the old one still had about 299 s left."""
    caplog.set_level(logging.DEBUG)
    world.tokens.lifetime_s = 330
    opened = [world.connections(kind) for kind in KINDS]
    for connections in opened:
        await connections.start()
    try:
        await asyncio.gather(*(_call_both(c) for c in opened))
        first = {i.token: i.expires_on for i in world.tokens.issued}
        assert len(first) == 2 * len(KINDS)
        await asyncio.sleep(31)
        refreshed_at = time.time()
        await asyncio.gather(*(_call_both(c) for c in opened))
    finally:
        for connections in opened:
            await connections.stop()
    for kind in KINDS:
        for scope, seen in (
            (GRAPH_SCOPE, world.graph.seen),
            (world.dataverse_scope, world.dataverse.seen),
        ):
            old, new = world.tokens.tokens_for(kind, _scope(kind, scope))
            assert first[old] - refreshed_at > 240  # the old token was far from expired
            assert f"Bearer {old}" in seen and f"Bearer {new}" in seen
            assert seen.index(f"Bearer {new}") >= len(KINDS)  # only after the wait
    assert len(world.graph.seen) == len(world.dataverse.seen) == 2 * len(KINDS)
    for secret in world.secrets():
        assert secret not in caplog.text


async def test_a_wrong_secret_is_an_auth_error_without_the_secret(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph, _ = world.settings("client_secret")
    wrong = "wrong-" + world.tokens.client_secret
    config = credential_config(graph.model_copy(update={"client_secret": SecretStr(wrong)}), "g")
    credential = build_credential(
        config, transport_options={"connection_verify": str(world.tokens.ca_file)}
    )
    tokens = TokenSource(credential, GRAPH_SCOPE)
    try:
        with pytest.raises(AuthError, match="could not get a token") as info:
            await tokens.token()
    finally:
        await tokens.close()
    assert world.tokens.refused == ["bad client credential"]
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert world.tokens.issued == []


# --- TokenSource's timing, with a clock of the test's own --------------------------------


def _info(token: str, expires_on: int, refresh_on: int | None = None) -> AccessTokenInfo:
    return AccessTokenInfo(token, expires_on, refresh_on=refresh_on)


@dataclass
class ScriptedCredential:
    """Hands out ``answers`` in turn (an exception is raised); counts the calls."""

    answers: list[AccessTokenInfo | Exception]
    calls: int = 0
    closed: bool = False

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        self.calls += 1
        await asyncio.sleep(0)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> ScriptedCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _source(credential: ScriptedCredential, clock: Clock) -> TokenSource:
    return TokenSource(credential, "https://x/.default", clock=clock)


async def test_token_is_kept_until_five_minutes_before_expiry_then_replaced() -> None:
    clock = Clock()
    start = int(clock.now)
    cred = ScriptedCredential([_info("a", start + 3600), _info("b", start + 7200)])
    tokens = _source(cred, clock)
    assert await tokens.token() == "a"
    clock.now = start + 3600 - 301
    assert await tokens.token() == "a" and cred.calls == 1
    clock.now = start + 3600 - 299  # inside the margin, a still valid
    assert await tokens.token() == "b" and cred.calls == 2
    await tokens.close()
    assert cred.closed


async def test_refresh_hint_is_honoured_and_callers_share_one_request() -> None:
    clock = Clock()
    start = int(clock.now)
    cred = ScriptedCredential(
        [_info("a", start + 86_400, refresh_on=start + 43_200), _info("b", start + 90_000)]
    )
    tokens = _source(cred, clock)
    assert await tokens.token() == "a"
    clock.now = start + 43_201  # past the hint: one caller asks, the others keep valid "a"
    got = await asyncio.gather(*(tokens.token() for _ in range(5)))
    assert got == ["b", "a", "a", "a", "a"] and cred.calls == 2
    assert await tokens.token() == "b"


async def test_callers_of_an_expired_token_wait_for_one_request() -> None:
    clock = Clock()
    start = int(clock.now)
    cred = ScriptedCredential([_info("a", start + 400), _info("b", start + 4000)])
    tokens = _source(cred, clock)
    assert await tokens.token() == "a"
    clock.now = start + 401
    got = await asyncio.gather(*(tokens.token() for _ in range(5)))
    assert got == ["b"] * 5 and cred.calls == 2


async def test_a_failed_refresh_keeps_a_valid_token_and_retries_later() -> None:
    clock = Clock()
    start = int(clock.now)
    cred = ScriptedCredential(
        [_info("a", start + 400), OSError("endpoint down"), _info("b", start + 4000)]
    )
    tokens = _source(cred, clock)
    assert await tokens.token() == "a"
    clock.now = start + 150  # inside the margin: asks, fails, keeps a
    assert await tokens.token() == "a" and cred.calls == 2
    clock.now = start + 155  # within the retry interval: does not ask
    assert await tokens.token() == "a" and cred.calls == 2
    clock.now = start + 161
    assert await tokens.token() == "b" and cred.calls == 3


async def test_no_valid_token_is_an_auth_error() -> None:
    clock = Clock()
    start = int(clock.now)
    cred = ScriptedCredential([_info("a", start + 400), OSError("down"), _info("", start + 999)])
    tokens = _source(cred, clock)
    assert await tokens.token() == "a"
    clock.now = start + 401  # expired: a failure is an error now
    with pytest.raises(AuthError, match="OSError"):
        await tokens.token()
    with pytest.raises(AuthError, match="no valid token"):
        await tokens.token()


# --- garbage configuration ---------------------------------------------------------------


def test_unknown_kind_is_refused_by_settings_and_by_the_builder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DYNASYNC_DATAVERSE__CREDENTIAL", "password")
    with pytest.raises(ValidationError, match="client_secret"):
        Settings()
    with pytest.raises(CredentialError, match="unknown credential kind 'password'"):
        build_credential(CredentialConfig(kind="password"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: CredentialConfig("client_secret", client_id="c", client_secret="s"),
            "tenant_id",
        ),
        (
            lambda d: CredentialConfig("client_secret", tenant_id="t", client_id="c"),
            "client_secret",
        ),
        (lambda d: CredentialConfig("certificate", tenant_id="t"), "client_id, certificate_path"),
        (
            lambda d: CredentialConfig("certificate", "t", "c", certificate_path=d / "none.pem"),
            "cannot be read: No such file",
        ),
        (
            lambda d: CredentialConfig("certificate", "t", "c", certificate_path=d),
            "cannot be read",
        ),
        (
            lambda d: CredentialConfig(
                "certificate", "t", "c", certificate_path=_write(d / "x.pem", b"\x00garbage")
            ),
            "no usable certificate",
        ),
        (
            lambda d: CredentialConfig(
                "certificate", "t", "c", certificate_path=_write(d / "e.pem", b"  \n")
            ),
            "is empty",
        ),
        (
            lambda d: CredentialConfig(
                "workload_identity", "t", "c", federated_token_file=d / "gone"
            ),
            r"federated token file .* cannot be read",
        ),
        (lambda d: CredentialConfig("workload_identity", "t", "c"), "federated_token_file"),
        (
            lambda d: CredentialConfig("managed_identity", client_secret="s"),
            "managed_identity credential takes no client_secret",
        ),
        (
            lambda d: CredentialConfig("static", static_token="t", client_secret="s"),
            "takes no client_secret",
        ),
        (lambda d: CredentialConfig("static"), "static_token"),
        (lambda d: CredentialConfig("static", static_token="a b"), "whitespace"),
        (
            lambda d: CredentialConfig(
                "client_secret", "t", "c", client_secret="s", authority="http://login.local"
            ),
            "https",
        ),
    ],
)
def test_garbage_credential_config_is_a_clear_error(
    tmp_path: Path, make: Callable[[Path], CredentialConfig], message: str
) -> None:
    with pytest.raises(CredentialError, match=message):
        build_credential(make(tmp_path))


def test_settings_garbage_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="Graph credentials missing: set DYNASYNC_GRAPH__"):
        credential_config(GraphSettings(), "graph")
    secret_file = tmp_path / "secret"
    both = DataverseSettings(client_secret=SecretStr("x"), client_secret_file=secret_file)
    with pytest.raises(CredentialError, match="not both"):
        credential_config(both, "dataverse")
    with pytest.raises(CredentialError, match=r"client secret file .* cannot be read"):
        credential_config(DataverseSettings(client_secret_file=secret_file), "dataverse")
    secret_file.write_text("\n")
    with pytest.raises(CredentialError, match="is empty"):
        credential_config(DataverseSettings(client_secret_file=secret_file), "dataverse")
    mixed = GraphSettings(managed_identity=True, credential="client_secret")
    with pytest.raises(CredentialError, match="contradicts"):
        credential_config(mixed, "graph")
    with pytest.raises(ValidationError, match="tenant_id"):
        GraphSettings(tenant_id="bad tenant/../x")


def test_settings_pick_the_kind_and_read_secrets_from_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret-from-file\n")
    config = credential_config(
        DataverseSettings(tenant_id="t", client_id="c", client_secret_file=secret_file), "dv"
    )
    assert (config.kind, config.client_secret) == ("client_secret", "s3cret-from-file")
    assert "s3cret" not in repr(config)
    assert credential_config(GraphSettings(managed_identity=True), "g").kind == "managed_identity"
    cert = credential_config(GraphSettings(certificate_path=tmp_path / "c.pem"), "g")
    assert cert.kind == "certificate"
    env = {
        "AZURE_TENANT_ID": "tenant-from-env",
        "AZURE_CLIENT_ID": "client-from-env",
        "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "token"),
    }
    workload = credential_config(
        GraphSettings(credential="workload_identity"), "graph", environ=env
    )
    assert (workload.tenant_id, workload.client_id) == ("tenant-from-env", "client-from-env")
    assert workload.federated_token_file == tmp_path / "token"
    static = credential_config(DataverseSettings(static_token=SecretStr("tok")), "dv")
    assert (static.kind, static.static_token) == ("static", "tok")
