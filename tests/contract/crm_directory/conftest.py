"""The Dataverse emulator fixtures, shared with the connector's contract tests."""

from tests.contract.dataverse_connector.fixtures import dv, make_emulator

__all__ = ["dv", "make_emulator"]
