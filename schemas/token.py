"""The CRM tracking token in an email subject, in Dynamics' format: the organisation's prefix
(``CRM:`` unless configured otherwise) followed by digits, e.g. ``RE: Quote CRM:0001234``.

This is the one definition of the token: the Outlook reader splits it off the subject with it,
and the JSON Schema of an organisation's ``token_prefix`` is derived from the same constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

DEFAULT_TOKEN_PREFIX: Final = "CRM:"
#: The longest token (the CRM's ``trackingtoken`` column holds 50 characters).
MAX_TOKEN_LENGTH: Final = 50
MAX_PREFIX_LENGTH: Final = 20
#: A prefix: 1-20 characters without whitespace, not ending in a digit (or where would the
#: digits start?). ECMA and Python read this pattern alike.
TOKEN_PREFIX_PATTERN: Final = r"^[^\s]{0,19}[^\s0-9]$"


class TokenPrefixError(ValueError):
    """A tracking token prefix that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class TrackingTokenFormat:
    """How tracking tokens look in one organisation. The prefix matches in any case; the
    digits are ASCII; a token stands alone between whitespace (or the subject's ends)."""

    prefix: str = DEFAULT_TOKEN_PREFIX
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = self.prefix
        if not isinstance(prefix, str) or not re.fullmatch(TOKEN_PREFIX_PATTERN[1:-1], prefix):
            raise TokenPrefixError(
                f"tracking token prefix {prefix!r}: expected 1-{MAX_PREFIX_LENGTH} characters "
                "without whitespace, not ending in a digit (Dynamics' default is CRM:)"
            )
        digits = MAX_TOKEN_LENGTH - len(prefix)
        regex = re.compile(rf"(?<!\S)(?i:{re.escape(prefix)})[0-9]{{1,{digits}}}(?!\S)")
        object.__setattr__(self, "regex", regex)

    def find(self, subject: str | None) -> str | None:
        """The token in ``subject`` (the last one, as Dynamics appends it), or None."""
        return self.split(subject)[1]

    def split(self, subject: str | None) -> tuple[str | None, str | None]:
        """(``subject`` without its token and the one space before it, the token).

        The inverse of appending ``" " + token`` to a subject; a subject that was only the
        token is None.
        """
        if not isinstance(subject, str):
            return None, None
        matches = list(self.regex.finditer(subject))
        if not matches:
            return subject, None
        last = matches[-1]
        start = last.start()
        if start > 0 and subject[start - 1].isspace():
            start -= 1
        rest = subject[:start] + subject[last.end() :]
        return rest or None, last.group(0)
