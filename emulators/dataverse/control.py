"""Faults, statistics and the ``/_emulator/`` control API (no auth)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .config import is_guid
from .errors import error_body
from .store import Store
from .throttle import Throttle

FAULT_STATUSES = (429, 500, 503, 504)


@dataclass(frozen=True)
class FaultPlan:
    """Injected failures: ``status`` with probability ``rate``; ``latency_ms`` on every call."""

    status: int | None = None
    rate: float = 0.0
    retry_after: int = 1
    latency_ms: int = 0


def parse_fault_plan(data: Any) -> FaultPlan:
    """Validate a ``POST /_emulator/faults`` body (ValueError with a clear message)."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(data) - {"status", "rate", "retry_after", "latency_ms"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    status = data.get("status")
    rate = data.get("rate", 1.0)
    retry_after = data.get("retry_after", 1)
    latency = data.get("latency_ms", 0)
    if status is not None and (isinstance(status, bool) or status not in FAULT_STATUSES):
        raise ValueError(f"status must be one of {list(FAULT_STATUSES)}")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ValueError("rate must be a number between 0 and 1")
    if (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int)
        or not 0 <= retry_after <= 3600
    ):
        raise ValueError("retry_after must be an integer number of seconds between 0 and 3600")
    if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= 60_000:
        raise ValueError("latency_ms must be an integer between 0 and 60000")
    if rate == 0 or (status is None and latency == 0):
        return FaultPlan()
    return FaultPlan(status, float(rate), retry_after, latency)


_FAULT_TEXT = {
    429: ("0x80072322", "Number of requests exceeded the limit (injected fault)."),
    500: ("0x80040216", "An unexpected error occurred (injected fault)."),
    503: ("0x80040216", "The service is temporarily unavailable (injected fault)."),
    504: ("0x80040216", "The request timed out (injected fault)."),
}


@dataclass
class Faults:
    """Current fault plan and its random source."""

    rng: random.Random
    plan: FaultPlan = field(default_factory=FaultPlan)
    injected: int = 0

    def pick(self) -> web.Response | None:
        """A fault response to answer instead of the real one, or None."""
        plan = self.plan
        if plan.status is None or plan.rate <= 0 or self.rng.random() >= plan.rate:
            return None
        self.injected += 1
        code, message = _FAULT_TEXT[plan.status]
        headers = {"OData-Version": "4.0", "Content-Type": "application/json"}
        if plan.status in (429, 503, 504):
            headers["Retry-After"] = str(plan.retry_after)
        return web.Response(status=plan.status, body=error_body(code, message), headers=headers)


@dataclass
class Stats:
    """Request counters."""

    by_user: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_user_method_status: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    throttled: int = 0

    def record(self, user: str, method: str, status: int) -> None:
        """Count one answered API request."""
        self.by_user[user] += 1
        self.by_method[method] += 1
        self.by_status[str(status)] += 1
        per_user = self.by_user_method_status.setdefault(user, {})
        per_user.setdefault(method, Counter())[str(status)] += 1
        if status == 429:
            self.throttled += 1

    def as_json(self, faults_injected: int) -> dict[str, Any]:
        """The ``GET /_emulator/stats`` body."""
        return {
            "total": sum(self.by_method.values()),
            "by_user": dict(self.by_user),
            "by_method": dict(self.by_method),
            "by_status": dict(self.by_status),
            "by_user_method_status": {
                u: {m: dict(c) for m, c in per.items()}
                for u, per in self.by_user_method_status.items()
            },
            "throttled": self.throttled,
            "faults_injected": faults_injected,
        }


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _problem(message: str, status: int = 400) -> web.Response:
    return _json(status, {"error": {"code": "BadRequest", "message": message}})


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not valid JSON: {exc.msg}") from None


@dataclass
class Control:
    """Handlers of the control API."""

    store: Store
    faults: Faults
    stats_source: Callable[[], Stats]
    throttle: Throttle
    reset_state: Callable[[], None]
    seed_users: Callable[[list[dict[str, Any]]], list[str]]
    seed_organization: Callable[[dict[str, Any]], str]

    def routes(self) -> list[web.RouteDef]:
        """The ``/_emulator/`` routes."""
        return [
            web.post("/_emulator/reset", self.reset),
            web.post("/_emulator/faults", self.set_faults),
            web.delete("/_emulator/faults", self.clear_faults),
            web.post("/_emulator/expire-tokens", self.expire_tokens),
            web.post("/_emulator/share", self.share),
            web.post("/_emulator/seed", self.seed),
            web.get("/_emulator/stats", self.get_stats),
        ]

    async def reset(self, request: web.Request) -> web.Response:
        self.reset_state()
        return _json(200, {"reset": True})

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults.plan = parse_fault_plan(await _read_json(request))
        except ValueError as exc:
            return _problem(f"invalid fault plan: {exc}")
        plan = self.faults.plan
        return _json(
            200,
            {
                "status": plan.status,
                "rate": plan.rate,
                "retry_after": plan.retry_after,
                "latency_ms": plan.latency_ms,
            },
        )

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.faults.plan = FaultPlan()
        return _json(200, {"cleared": True})

    async def expire_tokens(self, request: web.Request) -> web.Response:
        self.store.expire_tokens()
        return _json(200, {"expired_below": self.store.expired_below})

    async def share(self, request: web.Request) -> web.Response:
        try:
            data = await _read_json(request)
        except ValueError as exc:
            return _problem(str(exc))
        if not isinstance(data, dict) or set(data) != {"table", "id", "systemuserid"}:
            return _problem('the body must be {"table", "id", "systemuserid"}')
        table, row_id, user = data["table"], data["id"], data["systemuserid"]
        catalog = self.store.catalog
        if not isinstance(table, str) or (
            table not in catalog.by_logical and table not in catalog.by_set
        ):
            return _problem(f"unknown table {table!r} (use a logical or entity set name)")
        logical = catalog.by_set[table].logical if table in catalog.by_set else table
        if not isinstance(row_id, str) or not is_guid(row_id):
            return _problem("id must be a GUID")
        if not isinstance(user, str) or not is_guid(user):
            return _problem("systemuserid must be a GUID")
        if self.store.get(logical, row_id) is None:
            return _problem(f"{logical} {row_id} does not exist", 404)
        if self.store.get("systemuser", user) is None:
            return _problem(f"systemuser {user} does not exist", 404)
        self.store.share(logical, row_id, user)
        return _json(200, {"shared": True})

    async def seed(self, request: web.Request) -> web.Response:
        try:
            data = await _read_json(request)
            if (
                not isinstance(data, dict)
                or not data
                or set(data) - {"systemusers", "organization"}
            ):
                raise ValueError('the body must be {"systemusers": [...], "organization": {...}}')
            users = data.get("systemusers", [])
            if not isinstance(users, list):
                raise ValueError("systemusers must be a list of objects")
            org = data.get("organization")
            if org is not None and not isinstance(org, dict):
                raise ValueError("organization must be an object")
            user_ids = self.seed_users(users)
            org_id = self.seed_organization(org) if org is not None else None
        except ValueError as exc:
            return _problem(f"invalid seed: {exc}")
        return _json(200, {"systemuserids": user_ids, "organizationid": org_id})

    async def get_stats(self, request: web.Request) -> web.Response:
        return _json(200, self.stats_source().as_json(self.faults.injected))
