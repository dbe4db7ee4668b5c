"""A small in-memory Graph stand-in for unit tests (contacts, $batch, subscriptions).

Only what the writer and the subscription manager touch, in Graph's shapes; the full-fidelity
emulator lives in ``emulators/graph`` and runs the contract suite.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiohttp import web

_ANY = re.compile(
    r"ep/id eq '(?P<id>(?:[^']|'')*)' and ep/value (?P<op>eq|ne) '(?P<value>(?:[^']|'')*)'"
)


@dataclass
class FakeGraph:
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    client_states: dict[str, str] = field(default_factory=dict)  # subscription id -> clientState
    requests: list[str] = field(default_factory=list)
    throttle_next: int = 0
    base: str = ""
    log: list[tuple[int, str]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _new_key(self) -> str:
        return f"ck{next(self._ids)}"

    def _touch(self, item_id: str) -> None:
        self.log.append((next(self._ids), item_id))

    def _delta(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """Contacts delta: a full page set, then what changed since the token."""
        since = query.get("since")
        end = self.log[-1][0] if self.log else 0
        if since is None:
            values: list[dict[str, Any]] = list(self.contacts.values())
        else:
            if not since.isdigit():
                return 410, {}, {"error": {"code": "SyncStateNotFound"}}
            changed = dict.fromkeys(i for seq, i in self.log if seq > int(since))
            values = [
                self.contacts.get(i, {"id": i, "@removed": {"reason": "deleted"}}) for i in changed
            ]
        link = f"{self.base}/v1.0/users/m1/contacts/delta?since={end}"
        return 200, {}, {"value": values, "@odata.deltaLink": link}

    async def dispatch(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        self.requests.append(f"{method} {path}")
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return 429, {"Retry-After": "0"}, {"error": {"code": "TooManyRequests"}}
        parts = path.strip("/").split("/")
        if parts[:1] == ["subscriptions"]:
            return await self._subscriptions(method, parts[1:], body)
        if parts[2:] == ["contacts", "delta"]:
            return self._delta(query)
        if len(parts) >= 3 and parts[0] == "users" and parts[2] == "contacts":
            return self._contacts(method, parts[3:], query, headers, body)
        if len(parts) == 4 and parts[2:] == ["todo", "lists"]:
            return 200, {}, {"value": [{"id": "L1", "wellknownListName": "defaultList"}]}
        return 404, {}, {"error": {"code": "ResourceNotFound", "message": path}}

    def _contacts(
        self,
        method: str,
        rest: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        if not rest:
            if method == "GET":
                items = list(self.contacts.values())
                flt = query.get("$filter")
                if flt:
                    m = _ANY.search(flt)
                    assert m, flt
                    pid, value = m["id"].replace("''", "'"), m["value"].replace("''", "'")
                    items = [
                        c
                        for c in items
                        if any(
                            p["id"] == pid and (p["value"] == value) == (m["op"] == "eq")
                            for p in c.get("singleValueExtendedProperties", [])
                        )
                    ]
                return 200, {}, {"value": items}
            new = dict(body)
            new["id"] = f"AAMk{next(self._ids)}"
            new["changeKey"] = self._new_key()
            self.contacts[new["id"]] = new
            self._touch(new["id"])
            return 201, {}, new
        item = self.contacts.get(rest[0])
        if item is None:
            return 404, {}, {"error": {"code": "ErrorItemNotFound"}}
        match = headers.get("if-match")
        if match is not None and match not in (item["changeKey"], f'W/"{item["changeKey"]}"'):
            return 412, {}, {"error": {"code": "ErrorIrresolvableConflict"}}
        if method == "DELETE":
            del self.contacts[rest[0]]
            self._touch(rest[0])
            return 204, {}, None
        if method == "PATCH":
            item.update(body)
            item["changeKey"] = self._new_key()
            self._touch(rest[0])
            return 200, {}, item
        return 200, {}, item

    async def _subscriptions(
        self, method: str, rest: list[str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and not rest:
            return 200, {}, {"value": list(self.subscriptions.values())}
        if method == "POST":
            async with httpx.AsyncClient() as http:
                resp = await http.post(
                    body["notificationUrl"], params={"validationToken": "token 123"}
                )
            if resp.status_code != 200 or resp.text != "token 123":
                return 400, {}, {"error": {"code": "InvalidRequest", "message": "validation"}}
            made = {k: v for k, v in body.items() if k != "clientState"}
            made["id"] = f"sub-{next(self._ids)}"
            self.subscriptions[made["id"]] = made
            self.client_states[made["id"]] = body["clientState"]
            return 201, {}, made
        sub = self.subscriptions.get(rest[0]) if rest else None
        if sub is None:
            return 404, {}, {"error": {"code": "ResourceNotFound"}}
        if method == "DELETE":
            del self.subscriptions[rest[0]]
            return 204, {}, None
        sub.update(body)
        return 200, {}, sub

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = orjson.loads(raw) if raw else {}
        path = request.path.removeprefix("/v1.0")
        if path == "/$batch":
            self.requests.append("BATCH")
            responses = []
            for req in body["requests"]:
                url = httpx.URL("http://x" + req["url"])
                hdrs = {k.lower(): v for k, v in req.get("headers", {}).items()}
                status, headers, rbody = await self.dispatch(
                    req["method"], url.path, dict(url.params), hdrs, req.get("body")
                )
                responses.append(
                    {"id": req["id"], "status": status, "headers": headers, "body": rbody}
                )
            return web.json_response({"responses": responses})
        hdrs = {k.lower(): v for k, v in request.headers.items()}
        status, headers, rbody = await self.dispatch(
            request.method, path, dict(request.query), hdrs, body
        )
        if rbody is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status,
            headers=headers,
            body=orjson.dumps(rbody),
            content_type="application/json",
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app
