"""The runtime's own inputs: organisation URLs, reader options, credentials, fan-out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.runtime import RuntimeOptions
from pipeline.settings import DataverseSettings
from pipeline.sinks import api_root, dataverse_token

USER = "00000000-0000-4000-8000-0000000000aa"
OTHER = "00000000-0000-4000-8000-0000000000bb"


def test_api_root_of_an_organisation_url() -> None:
    assert api_root("https://org.crm.dynamics.com") == "https://org.crm.dynamics.com/api/data/v9.2"
    assert api_root("http://127.0.0.1:8082/") == "http://127.0.0.1:8082/api/data/v9.2"
    kept = "http://127.0.0.1:8082/api/data/v9.1"
    assert api_root(kept) == kept


@pytest.mark.parametrize("url", ["", "org.crm.dynamics.com", "ftp://org", "https://o/x?q=1"])
def test_api_root_refuses_garbage(url: str) -> None:
    with pytest.raises(ValueError, match="organisation URL"):
        api_root(url)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RuntimeOptions(crm_poll_s=0),
        lambda: RuntimeOptions(outlook_poll_s=-1),
        lambda: RuntimeOptions(crm_tables=()),
        lambda: RuntimeOptions(crm_poll_s=1e9),
        lambda: RuntimeOptions(crm_poll_max_s=0),
        lambda: RuntimeOptions(crm_poll_s=10, crm_poll_max_s=5),
        lambda: RuntimeOptions(outlook_poll_max_s=-1),
        lambda: RuntimeOptions(outlook_poll_max_s=7200),
        lambda: RuntimeOptions(outlook_poll_s=30, outlook_poll_max_s=10),
        lambda: RuntimeOptions(safety_net_s=0),
        lambda: RuntimeOptions(safety_net_s=86_401),
    ],
)
def test_runtime_options_refuse_garbage(make: Callable[[], RuntimeOptions]) -> None:
    with pytest.raises(ValueError):
        make()


def test_outlook_ceiling_defaults_per_mode() -> None:
    default = RuntimeOptions()
    assert (default.outlook_ceiling(True), default.outlook_ceiling(False)) == (60.0, 180.0)
    assert default.crm_poll_max_s == 60.0 and default.safety_net_s == 900.0
    assert RuntimeOptions(outlook_poll_max_s=5).outlook_ceiling(True) == 5.0
    assert RuntimeOptions(outlook_poll_max_s=5).outlook_ceiling(False) == 5.0
    slow = RuntimeOptions(outlook_poll_s=600)  # a floor above the default ceiling wins
    assert (slow.outlook_ceiling(True), slow.outlook_ceiling(False)) == (600.0, 600.0)


def test_dataverse_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Dataverse credentials missing"):
        dataverse_token(DataverseSettings(), "https://org.crm.dynamics.com/api/data/v9.2")
