"""The aiohttp application: auth, impersonation, throttling, faults, stats, routing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .api import Api
from .batch import execute_batch, parse_batch
from .catalog import build_catalog
from .config import EmulatorConfig
from .control import Control, FaultPlan, Faults, Stats
from .errors import ApiError
from .messages import ApiRequest, ApiResponse, Headers, parse_query
from .security import Caller
from .store import Store
from .throttle import Throttle
from .writes import PayloadParser

API_ROOT = "/api/data/v9.2/"
_LOG = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _to_web(response: ApiResponse) -> web.Response:
    return web.Response(
        status=response.status, body=response.body or None, headers=response.headers
    )


def _error(exc: ApiError) -> web.Response:
    headers = {"OData-Version": "4.0", "Content-Type": "application/json; odata.metadata=minimal"}
    return web.Response(status=exc.status, body=exc.body(), headers={**headers, **exc.headers})


class Emulator:
    """The emulator's state and request pipeline (one per app)."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.catalog = build_catalog()
        self.store = Store(self.catalog)
        self.api = Api(config, self.catalog, self.store, clock)
        self.throttle = Throttle(config.throttle, config.throttle_enabled)
        self.faults = Faults(random.Random(config.fault_seed))
        self.stats = Stats()
        self.reset()

    def reset(self) -> None:
        """Back to a fresh organisation with only the application user."""
        self.store.clear()
        self.throttle.reset()
        self.faults.plan = FaultPlan()
        self.faults.injected = 0
        self.stats = Stats()
        app_user = Caller(self.config.app_user_id, impersonated=False)
        users = self.catalog.table("systemuser")
        parser = PayloadParser(self.catalog, lambda _ref: None)
        changes = parser.parse(
            users,
            {"fullname": "# Dynasync Application", "domainname": "dynasync-app@emulator.local"},
        )
        self.api.writer.create(users, changes, app_user, self.config.app_user_id)
        orgs = self.catalog.table("organization")
        changes = parser.parse(
            orgs,
            {
                "name": "Emulated Organization",
                "expirechangetrackingindays": self.config.expiry_days,
            },
        )
        self.api.writer.create(orgs, changes, app_user, self.config.organization_id)

    def seed_users(self, users: list[dict[str, Any]]) -> list[str]:
        """Create systemusers from control-API objects (ValueError if invalid)."""
        table = self.catalog.table("systemuser")
        parser = PayloadParser(self.catalog, lambda _ref: None)
        app_user = Caller(self.config.app_user_id, impersonated=False)
        ids: list[str] = []
        try:
            with self.store.atomic():
                for item in users:
                    if not isinstance(item, dict):
                        raise ValueError("each systemuser must be an object")
                    changes = parser.parse(table, item)
                    existing = self.store.get("systemuser", changes.body_id or "")
                    if existing is None and "isdisabled" not in item:
                        # Dataverse's isdisabled is a boolean that defaults to false, never null
                        changes = parser.parse(table, {**item, "isdisabled": False})
                    if existing is not None:
                        row = self.api.writer.update(table, existing, changes, app_user)
                    else:
                        row = self.api.writer.create(table, changes, app_user, None)
                    ids.append(row.id)
        except ApiError as exc:
            raise ValueError(exc.message) from None
        return ids

    def seed_organization(self, org: dict[str, Any]) -> str:
        """Update the organisation row (ValueError if invalid)."""
        table = self.catalog.table("organization")
        parser = PayloadParser(self.catalog, lambda _ref: None)
        app_user = Caller(self.config.app_user_id, impersonated=False)
        current = self.store.get("organization", self.config.organization_id)
        assert current is not None
        try:
            with self.store.atomic():
                self.api.writer.update(table, current, parser.parse(table, org), app_user)
        except ApiError as exc:
            raise ValueError(exc.message) from None
        return current.id

    def root(self, request: web.Request) -> str:
        """The absolute API root for links."""
        origin = self.config.base_url or f"{request.scheme}://{request.host}"
        return origin + API_ROOT

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        ok = scheme.lower() == "bearer" and bool(token)
        if ok and self.config.accepted_tokens and token not in self.config.accepted_tokens:
            ok = False
        if not ok:
            raise ApiError(
                401,
                "0x80048306",
                "The user is not authenticated: a valid bearer token is required.",
                {
                    "WWW-Authenticate": "Bearer authorization_uri="
                    "https://login.microsoftonline.com/common/oauth2/authorize"
                },
            )

    async def handle(self, request: web.Request) -> web.Response:
        """Entry point for every ``/api/data/v9.2/…`` request."""
        user = "anonymous"
        status = 500
        admitted = False
        started = time.monotonic()
        try:
            self._authenticate(request)
            body = await request.read()
            api_request = ApiRequest(
                request.method,
                request.match_info.get("tail", ""),
                parse_query(request.query_string),
                Headers(request.headers.items()),
                body,
            )
            caller = self.api.caller(api_request)
            user = caller.user_id
            self.throttle.acquire(user)
            admitted = True
            plan = self.faults.plan
            if plan.latency_ms:
                await asyncio.sleep(plan.latency_ms / 1000)
            fault = self.faults.pick()
            if fault is not None:
                status = fault.status
                return fault
            response = self._dispatch(request, api_request)
            status = response.status
            return response
        except ApiError as exc:
            status = exc.status
            return _error(exc)
        except web.HTTPException as exc:
            status = exc.status
            return _error(ApiError(exc.status, "0x80040216", exc.reason))
        except Exception:
            _LOG.exception("unexpected error answering %s %s", request.method, request.path)
            return _error(ApiError(500, "0x80040216", "An unexpected error occurred."))
        finally:
            if admitted:
                self.throttle.release(user, (time.monotonic() - started) * 1000)
            self.stats.record(user, request.method, status)

    def _dispatch(self, request: web.Request, api_request: ApiRequest) -> web.Response:
        root = self.root(request)
        if api_request.path == "$batch":
            if api_request.method != "POST":
                raise ApiError(405, "0x80060888", "$batch accepts only POST.")
            parts = parse_batch(
                api_request.body,
                api_request.headers.get("Content-Type", ""),
                api_request.headers,
                self.config.max_batch_operations,
            )
            body, content_type = execute_batch(
                parts,
                api_request.headers,
                lambda req, ids: self.api.handle(req, root, ids),
                self.store.atomic,
            )
            return web.Response(
                status=200,
                body=body,
                headers={"OData-Version": "4.0", "Content-Type": content_type},
            )
        return _to_web(self.api.handle(api_request, root))


def create_app(
    config: EmulatorConfig, *, clock: Callable[[], datetime] | None = None
) -> web.Application:
    """Build the emulator app (``clock`` overrides UTC now, for tests of token expiry)."""
    emulator = Emulator(config, clock or _utcnow)
    app = web.Application(client_max_size=config.max_body_bytes)
    control = Control(
        store=emulator.store,
        faults=emulator.faults,
        stats_source=lambda: emulator.stats,
        throttle=emulator.throttle,
        reset_state=emulator.reset,
        seed_users=emulator.seed_users,
        seed_organization=emulator.seed_organization,
    )
    app.add_routes(control.routes())
    app.router.add_route("*", "/api/data/v9.2/{tail:.*}", emulator.handle)
    app[EMULATOR_KEY] = emulator
    return app


EMULATOR_KEY = web.AppKey("dataverse_emulator", Emulator)
