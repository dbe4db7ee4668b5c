"""A plain OData v4 client over aiohttp, as a Dataverse client would write it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

API = "/api/data/v9.2/"


@dataclass
class Reply:
    """Status, headers and decoded JSON (or raw text) of a response."""

    status: int
    headers: dict[str, str]
    json: Any
    text: str

    @property
    def code(self) -> str:
        """The Dataverse error code."""
        return str(self.json["error"]["code"])

    @property
    def message(self) -> str:
        """The Dataverse error message."""
        return str(self.json["error"]["message"])


@dataclass
class ODataClient:
    """Sends Web API requests with a bearer token."""

    session: aiohttp.ClientSession
    origin: str
    token: str | None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return self.origin + API

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.root + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "OData-Version": "4.0", "OData-MaxVersion": "4.0"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return {**headers, **self.extra_headers, **(extra or {})}

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        hdrs = self.headers(headers)
        data = raw
        if body is not None:
            data = orjson.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.url(path), data=data, headers=hdrs) as resp:
            text = await resp.text()
            parsed: Any = None
            if text and resp.content_type == "application/json":
                parsed = orjson.loads(text)
            return Reply(resp.status, dict(resp.headers), parsed, text)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("GET", path, headers=headers)

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("POST", path, body, headers)

    async def patch(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("PATCH", path, body, headers)

    async def delete(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("DELETE", path, headers=headers)

    async def create(
        self, entity_set: str, body: Any, headers: dict[str, str] | None = None
    ) -> str:
        """POST and return the new id from OData-EntityId."""
        reply = await self.post(entity_set, body, headers)
        assert reply.status == 204, reply.text
        entity_id = reply.headers["OData-EntityId"]
        return entity_id[entity_id.rindex("(") + 1 : -1]


@dataclass
class BatchOp:
    """One operation for a $batch body."""

    method: str
    url: str
    body: Any = None
    content_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def batch_body(parts: list[BatchOp | list[BatchOp]]) -> tuple[bytes, str]:
    """A multipart/mixed $batch body (lists become changesets) and its content type."""
    boundary = f"batch_{uuid.uuid4()}"
    lines: list[str] = []

    def op_lines(op: BatchOp) -> list[str]:
        out = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
        if op.content_id is not None:
            out.append(f"Content-ID: {op.content_id}")
        out += ["", f"{op.method} {op.url} HTTP/1.1"]
        if op.body is not None:
            out.append("Content-Type: application/json; type=entry")
        out += [f"{k}: {v}" for k, v in op.headers.items()]
        out.append("")
        out.append(orjson.dumps(op.body).decode() if op.body is not None else "")
        return out

    for part in parts:
        lines.append(f"--{boundary}")
        if isinstance(part, list):
            cs = f"changeset_{uuid.uuid4()}"
            lines += [f"Content-Type: multipart/mixed; boundary={cs}", ""]
            for op in part:
                lines.append(f"--{cs}")
                lines += op_lines(op)
            lines.append(f"--{cs}--")
        else:
            lines += op_lines(part)
    lines.append(f"--{boundary}--")
    return "\r\n".join(lines).encode(), f"multipart/mixed; boundary={boundary}"


@dataclass
class BatchItem:
    """One response in a $batch reply."""

    status: int
    content_id: str | None
    headers: dict[str, str]
    body: Any


def parse_batch_reply(text: str, content_type: str) -> list[BatchItem]:
    """Flatten a multipart $batch response into its HTTP responses, in order."""
    boundary = content_type.split("boundary=", 1)[1].strip()
    items: list[BatchItem] = []
    for chunk in text.split(f"--{boundary}")[1:]:
        if chunk.startswith("--"):
            break
        head, _, rest = chunk.strip("\r\n").partition("\r\n\r\n")
        if "multipart/mixed" in head:
            inner_type = head.split(":", 1)[1].strip()
            items += parse_batch_reply(rest, inner_type)
            continue
        content_id = None
        for line in head.split("\r\n"):
            if line.lower().startswith("content-id:"):
                content_id = line.split(":", 1)[1].strip()
        status_block, _, body = rest.partition("\r\n\r\n")
        status_line, *header_lines = status_block.split("\r\n")
        headers = dict(h.split(": ", 1) for h in header_lines if h)
        body = body.strip()
        items.append(
            BatchItem(
                int(status_line.split()[1]),
                content_id,
                headers,
                orjson.loads(body) if body else None,
            )
        )
    return items


@dataclass
class RunningEmulator:
    """A started emulator: its origin, a raw session and an OData client."""

    origin: str
    session: aiohttp.ClientSession
    client: ODataClient

    async def control(self, method: str, path: str, body: Any = None) -> Reply:
        """Call the control API (no auth)."""
        data = orjson.dumps(body) if body is not None else None
        url = f"{self.origin}/_emulator/{path}"
        async with self.session.request(method, url, data=data) as resp:
            text = await resp.text()
            return Reply(
                resp.status, dict(resp.headers), orjson.loads(text) if text else None, text
            )

    async def seed_user(self, name: str) -> tuple[str, str]:
        """Create a systemuser; returns (systemuserid, aad object id)."""
        aad = str(uuid.uuid4())
        reply = await self.control(
            "POST",
            "seed",
            {
                "systemusers": [
                    {
                        "fullname": name,
                        "internalemailaddress": f"{name.lower()}@contoso.test",
                        "azureactivedirectoryobjectid": aad,
                        "domainname": f"{name.lower()}@contoso.test",
                    }
                ]
            },
        )
        assert reply.status == 200, reply.text
        return reply.json["systemuserids"][0], aad
