"""Dynasync pipeline: the worker app factory, stages, sync rules and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.app import App
    from pipeline.settings import Settings


def build_app(settings: Settings) -> App:
    """Build the worker app for ``settings`` (see :func:`pipeline.app.build_app`)."""
    from pipeline.app import build_app as _build

    return _build(settings)
