"""The engine's derived ids are exactly uuid5 over the Dynasync namespace (ids already stored
in link state and stamped on items must not change when their computation gets faster)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from pipeline.state import DYNASYNC_NS, correlation_id_for, derived_id, uuid5_text


@given(st.text())
def test_uuid5_text_is_uuid5(name: str) -> None:
    assert uuid5_text(name) == str(uuid.uuid5(DYNASYNC_NS, name))


def test_known_ids_are_unchanged() -> None:
    assert correlation_id_for("m1", "crm", "row-1") == str(
        uuid.uuid5(DYNASYNC_NS, "corr|m1|crm|row-1")
    )
    assert derived_id("cmd", "x", "2") == str(uuid.uuid5(DYNASYNC_NS, "cmd|x|2"))
