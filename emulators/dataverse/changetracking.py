"""Change tracking: delta tokens (``<version>!<MM/dd/yyyy HH:mm:ss>``), expiry, paging cookies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import EXPIRED_VERSION_STAMP, ApiError, bad_request

_TOKEN = re.compile(r"^(\d{1,18})!(\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})$")
_COOKIE = re.compile(r'^<cookie pagenumber="(\d{1,9})"((?: \w+="[^"<>]*")*) ?/>$')
_ATTR = re.compile(r'(\w+)="([^"<>]*)"')
_FORMAT = "%m/%d/%Y %H:%M:%S"

EXPIRED_MESSAGE = (
    "Version stamp associated with the client has expired. Please perform a full sync."
)


@dataclass(frozen=True)
class DeltaToken:
    """A decoded delta token."""

    version: int
    issued: datetime


def encode_token(version: int, issued: datetime) -> str:
    """The opaque token text (URL-encode it when putting it in a link)."""
    return f"{version}!{issued.astimezone(UTC).strftime(_FORMAT)}"


def decode_token(text: str) -> DeltaToken:
    """Parse a token, or 400."""
    match = _TOKEN.match(text)
    if match is None:
        raise bad_request(f"The $deltatoken value '{text[:80]}' is not valid.")
    try:
        issued = datetime.strptime(match.group(2), _FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise bad_request(f"The $deltatoken value '{text[:80]}' is not valid.") from None
    return DeltaToken(int(match.group(1)), issued)


def check_expiry(token: DeltaToken, now: datetime, expiry_days: int, expired_below: int) -> None:
    """Raise the expired-version-stamp error if the token is too old."""
    if token.version < expired_below or now - token.issued > timedelta(days=expiry_days):
        raise ApiError(400, EXPIRED_VERSION_STAMP, EXPIRED_MESSAGE)


def encode_cookie(page: int, **attrs: str) -> str:
    """A ``$skiptoken`` paging cookie in the service's XML-ish style."""
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f'<cookie pagenumber="{page}"{extra} />'


def decode_cookie(text: str) -> tuple[int, dict[str, str]]:
    """Parse a paging cookie, or 400."""
    match = _COOKIE.match(text.strip())
    if match is None:
        raise bad_request(f"The $skiptoken value '{text[:80]}' is not valid.")
    return int(match.group(1)), dict(_ATTR.findall(match.group(2)))
