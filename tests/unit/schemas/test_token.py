"""The CRM tracking token: one format (the organisation's prefix, then digits), found and split
off a subject the same way wherever it is used; bad prefixes are refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.token import (
    DEFAULT_TOKEN_PREFIX,
    MAX_TOKEN_LENGTH,
    TokenPrefixError,
    TrackingTokenFormat,
)

CRM = TrackingTokenFormat()


@pytest.mark.parametrize(
    ("subject", "rest", "token"),
    [
        ("RE: Quote CRM:0001234", "RE: Quote", "CRM:0001234"),
        ("CRM:0001234", None, "CRM:0001234"),  # a reply whose subject is only the token
        ("RE: CRM:0001234", "RE:", "CRM:0001234"),
        ("CRM:1 only", " only", "CRM:1"),
        ("RE: FW: a CRM:0001001 CRM:0001002", "RE: FW: a CRM:0001001", "CRM:0001002"),
        ("re: quote crm:0001234", "re: quote", "crm:0001234"),  # the prefix in any case
        ("xCRM:12", "xCRM:12", None),
        ("CRM:12x", "CRM:12x", None),
        ("CRM:", "CRM:", None),
        ("CRM:١٢٣", "CRM:١٢٣", None),  # digits are ASCII digits
        ("Quote", "Quote", None),
        ("", "", None),
    ],
)
def test_split_and_find(subject: str, rest: str | None, token: str | None) -> None:
    assert CRM.split(subject) == (rest, token)
    assert CRM.find(subject) == token


def test_nothing_to_split() -> None:
    assert CRM.split(None) == (None, None)
    assert CRM.find(None) is None


def test_a_configured_prefix_is_the_only_one() -> None:
    tkn = TrackingTokenFormat("TKN-")
    assert tkn.find("Re: hi TKN-0042") == "TKN-0042"
    assert tkn.find("Re: CRM:0001234") is None
    assert CRM.find("Re: hi TKN-0042") is None
    assert TrackingTokenFormat("a.b*").find("x a.b*7") == "a.b*7"  # no regex from the prefix
    assert TrackingTokenFormat("a.b*").find("x aXb*7") is None
    assert tkn == TrackingTokenFormat("TKN-") != CRM


def test_tokens_longer_than_the_crm_column_are_not_tokens() -> None:
    digits = MAX_TOKEN_LENGTH - len(DEFAULT_TOKEN_PREFIX)
    assert CRM.find("CRM:" + "1" * digits) == "CRM:" + "1" * digits
    assert CRM.find("CRM:" + "1" * (digits + 1)) is None


@given(
    st.text(max_size=40),
    st.integers(0, 10**12),
)
def test_appending_then_splitting_gives_the_subject_back(subject: str, number: int) -> None:
    token = f"CRM:{number:07d}"
    assert CRM.split(f"{subject} {token}") == (subject or None, token)


@pytest.mark.parametrize(
    "prefix", ["", " ", "CRM 1:", "CRM1", "x" * 21, "a\tb", "CRM:\n", None, 7, b"CRM:"]
)
def test_garbage_prefixes_are_refused(prefix: Any) -> None:
    with pytest.raises(TokenPrefixError, match="tracking token prefix"):
        TrackingTokenFormat(prefix)
