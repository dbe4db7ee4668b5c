"""Fixtures of the connector's contract tests (defined in ``fixtures``)."""

from .fixtures import dv, make_emulator

__all__ = ["dv", "make_emulator"]
