"""The emulator's state and its request pipeline (auth is checked by the HTTP layer)."""

from __future__ import annotations

import contextvars
import re
import time

from . import calendar, contacts, extensions, mail, subscription_routes, todo, users
from .batch import run_batch
from .config import EmulatorConfig
from .errors import GraphError, error_body
from .ids import new_guid
from .recurrence import preferred_zone, present_times
from .routing import Context, Request, Response, Router, normalize_path
from .store import Store
from .subscriptions import SubscriptionManager
from .throttle import Faults, RequestLog, Stats, Throttle

#: requests whose answers hold events (their times follow ``Prefer: outlook.timezone``)
_EVENTS = re.compile(r"/(events|calendarview|calendar|calendars)(/|$|\()", re.IGNORECASE)

_USER_PATH = re.compile(r"^/users/([^/]+)", re.IGNORECASE)


class Emulator:
    """Store, subscriptions, throttling, faults, stats and the router, wired together."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store()
        self.subscriptions = SubscriptionManager(config, self.store)
        self.throttle = Throttle(config.throttle, config.throttle_enabled)
        self.faults = Faults(config.fault_seed)
        self.stats = Stats()
        self.requests = RequestLog()
        self._agent: contextvars.ContextVar[str] = contextvars.ContextVar("agent", default="")
        self.router = Router()
        for module in (users, mail, contacts, calendar, todo, extensions, subscription_routes):
            module.register(self.router)
        self.context = Context(config, self.store, self.subscriptions)

    def reset(self) -> None:
        """Back to an empty service."""
        self.store.reset()
        self.subscriptions.reset()
        self.throttle.reset()
        self.faults.rule = None
        self.stats.reset()
        self.requests.reset()

    def _mailbox_of(self, path: str) -> tuple[str, set[str]]:
        found = _USER_PATH.match(path)
        if not found:
            return "", set()
        key = found.group(1)
        try:
            mailbox = self.store.user(key)
        except GraphError:
            return key.lower(), {key.lower()}
        return mailbox.id, {mailbox.id.lower(), mailbox.upn.lower(), mailbox.mail.lower()}

    def _subscription_mailbox(self, req: Request) -> tuple[str, set[str]]:
        """A subscription request counts against the mailbox it subscribes to (Outlook's
        limits are per app and mailbox), not against one bucket shared by every mailbox:
        ``POST /subscriptions`` by its body's ``resource``, ``/subscriptions/{id}`` by the
        stored subscription's. Anything else: no mailbox."""
        parts = req.path.strip("/").split("/")
        if not parts or parts[0].lower() != "subscriptions":
            return "", set()
        resource: object = None
        if len(parts) == 1 and req.method == "POST":
            try:
                body = req.json()
            except GraphError:
                return "", set()
            resource = body.get("resource") if isinstance(body, dict) else None
        elif len(parts) == 2:
            sub = self.subscriptions.items.get(parts[1])
            return (sub.mailbox_id, {sub.mailbox_id.lower()}) if sub is not None else ("", set())
        if not isinstance(resource, str):
            return "", set()
        return self._mailbox_of("/" + resource.lstrip("/"))

    async def dispatch(self, req: Request) -> Response:
        """Run one request (throttle, faults, handler) and turn errors into Graph bodies."""
        req.path = normalize_path(req.path)
        mailbox, names = self._mailbox_of(req.path)
        if not mailbox:
            mailbox, names = self._subscription_mailbox(req)
        started = time.time()
        agent = req.header("user-agent") or self._agent.get()
        request_id = new_guid()
        client_id = req.header("client-request-id")
        try:
            if req.path == "/$batch":
                if req.method != "POST":
                    raise GraphError(405, "Request_BadRequest", "Use POST for $batch.")
                token = self._agent.set(agent)  # its members are logged with its caller
                try:
                    response = await run_batch(req, self.dispatch, self.config.max_batch_requests)
                finally:
                    self._agent.reset(token)
            else:
                handler, params = self.router.match(req.method, req.path)
                key = (req.app_id, mailbox)
                self.throttle.enter(key)
                try:
                    await self.faults.apply(names)
                    response = await handler(self.context, req, params)
                finally:
                    self.throttle.leave(key)
                if _EVENTS.search(req.path) and response.status < 300 and response.body:
                    present_times(response.body, preferred_zone(req.header("Prefer")))
        except GraphError as exc:
            response = Response(
                exc.status, error_body(exc.code, exc.message, request_id, client_id), exc.headers
            )
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_id or request_id)
        if req.path != "/$batch":
            self.stats.record(mailbox, req.method, response.status)
            self.requests.record(
                mailbox, req.method, req.path, response.status, agent or "-", started, time.time()
            )
        return response
