"""``dynasync mailbox test``: what server-side sync's "Test & Enable" checks, each step
reported pass, fail (with the service's reason) or skipped:

- Graph: a token, the mailbox's user, one read of each synced folder kind (mail, contacts,
  calendar, To Do);
- Dataverse: WhoAmI as the application user, WhoAmI impersonating the mailbox's CRM user
  (``MSCRMCallerID``, what the connector writes with) and one read as that user;
- the webhook: a validation round trip against the public notification URL (POST with
  ``?validationToken=``, as Graph does, answered 200 ``text/plain`` with the token within 10 s).

Only reads: nothing is written to either service.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from connectors.graph.receiver import ReceiverConfig
from connectors.http import RetryPolicy
from pipeline.credentials import graph_tokens
from pipeline.mailbox_runner import describe
from pipeline.settings import Settings
from pipeline.sinks import Connections
from schemas.models import Mailbox, Organisation

CheckResult = Literal["pass", "fail", "skip"]

#: Graph answers a subscription's validation within this or the subscription is refused.
VALIDATION_TIMEOUT_S = 10.0
#: Few quick retries: an operator is waiting for the answer.
QUICK = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, max_retry_after=5.0)


@dataclass(frozen=True, slots=True)
class Check:
    """One step of the test."""

    area: Literal["graph", "dataverse", "webhook"]
    name: str
    result: CheckResult
    detail: str
    took_ms: int = 0


async def _step(
    area: Literal["graph", "dataverse", "webhook"],
    name: str,
    body: Callable[[], Awaitable[str]],
) -> Check:
    start = time.monotonic()
    try:
        detail = await body()
        result: CheckResult = "pass"
    except Exception as exc:
        detail, result = describe(exc), "fail"
    return Check(area, name, result, detail, int((time.monotonic() - start) * 1000))


#: (name, path under users/{id}) of one read per synced folder kind.
GRAPH_READS: tuple[tuple[str, str], ...] = (
    ("read mail (inbox)", "mailFolders/inbox/messages?$top=1&$select=id"),
    ("read contacts", "contacts?$top=1&$select=id"),
    ("read calendar", "events?$top=1&$select=id"),
    ("read To Do lists", "todo/lists?$top=1"),
)


async def check_mailbox(
    settings: Settings,
    mailbox: Mailbox,
    organisation: Organisation | None,
    *,
    http: httpx.AsyncClient | None = None,
) -> list[Check]:
    """Every check of ``mailbox``, in order; a failed step skips those that need it."""
    checks: list[Check] = []
    user = quote(mailbox.mailbox_id, safe="@.")

    async def token() -> str:
        source = graph_tokens(settings.graph)
        try:
            got = await source.token()
        finally:
            await source.close()
        if not got:
            raise ValueError("the credential returned an empty token")
        return "a Graph token was issued"

    checks.append(await _step("graph", "token", token))
    orgs = {organisation.org_id: organisation} if organisation is not None else {}
    async with Connections(settings.graph, settings.dataverse, orgs, policy=QUICK) as conn:
        transport = conn.transport
        if checks[-1].result == "pass":

            async def get_user() -> str:
                resp = await transport.request(
                    mailbox.mailbox_id,
                    "GET",
                    f"users/{user}?$select=id,userPrincipalName,mail",
                )
                return f"user {_text(resp.body, 'userPrincipalName') or mailbox.upn} found"

            checks.append(await _step("graph", "user", get_user))
        else:
            checks.append(Check("graph", "user", "skip", "no Graph token"))
        user_found = checks[-1].result == "pass"
        for name, path in GRAPH_READS:
            if not user_found:
                checks.append(Check("graph", name, "skip", "the user was not found"))
                continue

            async def read(path: str = path) -> str:
                await transport.request(mailbox.mailbox_id, "GET", f"users/{user}/{path}")
                return "readable"

            checks.append(await _step("graph", name, read))

        checks += await _dataverse(conn, mailbox, organisation)
    checks.append(await _webhook(settings, http))
    return checks


def _text(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


async def _dataverse(
    conn: Connections, mailbox: Mailbox, organisation: Organisation | None
) -> list[Check]:
    if organisation is None:
        return [Check("dataverse", "organisation", "fail", f"{mailbox.org_id!r} is not configured")]
    try:
        client = await conn.dataverse(organisation.org_id)
    except Exception as exc:
        return [Check("dataverse", "connect", "fail", describe(exc))]
    out: list[Check] = []

    async def app() -> str:
        got = await client.get_json("WhoAmI", what="WhoAmI")
        return f"application user {_text(got, 'UserId') or '?'}"

    async def impersonate() -> str:
        got = await client.get_json(
            "WhoAmI", run_as=mailbox.systemuser_id, what="WhoAmI as the mailbox's CRM user"
        )
        seen = (_text(got, "UserId") or "").lower()
        if seen != mailbox.systemuser_id.lower():
            raise ValueError(f"WhoAmI answered user {seen or '?'}, not {mailbox.systemuser_id}")
        return f"acts as CRM user {mailbox.systemuser_id} (MSCRMCallerID)"

    async def read_as_user() -> str:
        got = await client.get_json(
            f"systemusers({mailbox.systemuser_id})?$select=fullname,isdisabled",
            run_as=mailbox.systemuser_id,
            what="read of the CRM user as itself",
        )
        if got.get("isdisabled") is True:
            raise ValueError(f"CRM user {mailbox.systemuser_id} is disabled")
        return f"{_text(got, 'fullname') or 'the user'} is enabled"

    out.append(await _step("dataverse", "application access (WhoAmI)", app))
    if out[-1].result != "pass":
        out.append(Check("dataverse", "impersonation", "skip", "no application access"))
        return out
    out.append(await _step("dataverse", "impersonation (WhoAmI as the user)", impersonate))
    if out[-1].result != "pass":
        out.append(Check("dataverse", "read as the user", "skip", "cannot act as the user"))
        return out
    out.append(await _step("dataverse", "read as the user", read_as_user))
    return out


async def _webhook(settings: Settings, http: httpx.AsyncClient | None) -> Check:
    base = settings.graph.notification_url
    if base is None:
        return Check(
            "webhook",
            "validation round trip",
            "skip",
            "no notification URL configured (DYNASYNC_GRAPH__NOTIFICATION_URL): polling only",
        )
    url = base.rstrip("/") + ReceiverConfig(topic="-").notifications_path
    challenge = secrets.token_urlsafe(24)

    async def round_trip() -> str:
        client = http or httpx.AsyncClient()
        try:
            resp = await client.post(
                url,
                params={"validationToken": challenge},
                content=b"",
                timeout=VALIDATION_TIMEOUT_S,
            )
        except httpx.TimeoutException:
            raise TimeoutError(f"{url} did not answer within {VALIDATION_TIMEOUT_S:g} s") from None
        except httpx.TransportError as exc:
            raise ConnectionError(f"{url}: {type(exc).__name__}: {exc}") from None
        finally:
            if http is None:
                await client.aclose()
        kind = resp.headers.get("content-type", "").split(";")[0].strip()
        if resp.status_code != 200:
            raise ValueError(f"{url} answered HTTP {resp.status_code}, not 200")
        if kind != "text/plain":
            raise ValueError(f"{url} answered {kind or 'no content type'}, not text/plain")
        if resp.text != challenge:
            raise ValueError(f"{url} did not echo the validation token")
        return f"{url} echoed the token"

    return await _step("webhook", "validation round trip", round_trip)
