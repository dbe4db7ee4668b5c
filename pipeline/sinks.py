"""The connections a running pipeline shares, and the writer stage's ``SinkFactory`` over them.

One httpx client and one :class:`GraphTransport` serve every mailbox (the transport limits per
mailbox); one :class:`DataverseClient` per organisation (it limits per impersonated user). The
sink of a command is the Graph writer (commands carry their mailbox) or the organisation's
Dataverse writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from connectors.base import CommandSink
from connectors.credentials import TokenSource
from connectors.dataverse.auth import TokenProvider
from connectors.dataverse.client import DataverseClient
from connectors.dataverse.writer import DataverseWriter
from connectors.graph.transport import GraphTransport
from connectors.graph.writer import GraphWriter
from connectors.http import RequestMeter, RetryPolicy
from pipeline.credentials import dataverse_tokens, graph_tokens
from pipeline.crm_directory import CrmDirectory
from pipeline.parties import DirectoryParties, ResolvingSink
from pipeline.settings import DataverseSettings, GraphSettings
from schemas.models import Organisation
from schemas.types import Side

API_PATH = "/api/data/v9.2"


class UnknownOrganisationError(LookupError):
    """A command or reader names an organisation that is not configured."""


def api_root(org_url: str) -> str:
    """The Web API root of an organisation URL (``https://org.crm.dynamics.com`` →
    ``…/api/data/v9.2``; a URL that already names an API root is kept)."""
    parts = urlsplit(org_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"organisation URL must be an http(s) URL, got {org_url[:120]!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"organisation URL must not have a query or fragment: {org_url[:120]!r}")
    path = parts.path.rstrip("/")
    if "/api/data/" in f"{path}/":
        return f"{parts.scheme}://{parts.netloc}{path}"
    return f"{parts.scheme}://{parts.netloc}{path}{API_PATH}"


def dataverse_token(
    settings: DataverseSettings,
    base_url: str,
    *,
    transport_options: Mapping[str, Any] | None = None,
) -> TokenProvider:
    """The token provider for one organisation: its scope is the organisation URL's origin +
    ``/.default``; the credential is the configured kind (:mod:`pipeline.credentials`)."""
    return dataverse_tokens(settings, base_url, transport_options=transport_options)


class Connections:
    """The HTTP clients of a pipeline process and the :data:`SinkFactory` over them.

    Use ``async with Connections(graph, dataverse, organisations):`` or ``start()``/``stop()``.
    Calling the object is the writer stage's sink factory. ``credential_options`` go to
    azure-identity's HTTP pipeline of both credentials (e.g. ``connection_verify``: a CA bundle).
    """

    def __init__(
        self,
        graph: GraphSettings,
        dataverse: DataverseSettings,
        organisations: Mapping[str, Organisation],
        *,
        policy: RetryPolicy | None = None,
        meter: RequestMeter | None = None,
        credential_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._credential_options = dict(credential_options or {})
        self._meter = meter
        self._graph_settings = graph
        self._dv_settings = dataverse
        self._policy = policy
        self._orgs = dict(organisations)
        self._http: httpx.AsyncClient | None = None
        self._transport: GraphTransport | None = None
        self._graph_tokens: TokenSource | None = None
        self._graph_writer: GraphWriter | None = None
        self._clients: dict[str, DataverseClient] = {}
        self._dv_writers: dict[str, CommandSink] = {}
        self._directories: dict[str, CrmDirectory] = {}

    async def start(self) -> None:
        """Open the Graph client and one Dataverse client per known organisation."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30.0)
            self._graph_tokens = graph_tokens(
                self._graph_settings, transport_options=self._credential_options
            )
            self._transport = GraphTransport(
                self._http,
                self._graph_settings.base_url,
                self._graph_tokens.token,
                policy=self._policy,
                meter=self._meter,
            )
            self._graph_writer = GraphWriter(self._transport)
        for org_id in list(self._orgs):
            await self.dataverse(org_id)

    async def stop(self) -> None:
        """Close every client."""
        clients, self._clients = self._clients, {}
        self._dv_writers, self._directories = {}, {}
        for client in clients.values():
            await client.stop()
        if self._http is not None:
            http, self._http = self._http, None
            self._transport = self._graph_writer = None
            await http.aclose()
        if self._graph_tokens is not None:
            tokens, self._graph_tokens = self._graph_tokens, None
            await tokens.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def transport(self) -> GraphTransport:
        """The shared Graph transport (after ``start``)."""
        if self._transport is None:
            raise RuntimeError("connections are not started")
        return self._transport

    def set_organisations(self, organisations: Mapping[str, Organisation]) -> None:
        """Replace the known organisations (clients of new ones open on first use)."""
        self._orgs = dict(organisations)

    async def dataverse(self, org_id: str) -> DataverseClient:
        """The started Dataverse client of ``org_id``."""
        client = self._clients.get(org_id)
        if client is not None:
            return client
        org = self._orgs.get(org_id)
        if org is None:
            raise UnknownOrganisationError(f"organisation {org_id!r} is not configured")
        root = api_root(org.url)
        client = DataverseClient(
            root,
            dataverse_token(self._dv_settings, root, transport_options=self._credential_options),
            policy=self._policy,
        )
        client.meter = self._meter
        await client.start()
        self._clients[org_id] = client
        directory = CrmDirectory(client)
        parties = DirectoryParties(directory)
        writer = DataverseWriter(client, org_id=org_id, resolver=parties)
        self._directories[org_id] = directory
        self._dv_writers[org_id] = ResolvingSink(writer, parties)
        return client

    async def directory(self, org_id: str) -> CrmDirectory:
        """The CRM directory (address and email lookups, cached) of ``org_id``."""
        await self.dataverse(org_id)
        return self._directories[org_id]

    def __call__(self, side: Side, org_id: str, mailbox_id: str) -> CommandSink:
        """The sink for ``side`` of ``mailbox_id`` in ``org_id`` (a :data:`SinkFactory`)."""
        if side == "outlook":
            if self._graph_writer is None:
                raise RuntimeError("connections are not started")
            return self._graph_writer
        writer = self._dv_writers.get(org_id)
        if writer is None:
            raise UnknownOrganisationError(
                f"no Dataverse writer for organisation {org_id!r} (not configured or not started)"
            )
        return writer
