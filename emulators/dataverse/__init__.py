"""Dataverse Web API (v9.2) emulator: ``create_app(EmulatorConfig())`` or ``python -m``."""

from .app import EMULATOR_KEY, Emulator, create_app
from .config import EmulatorConfig, ThrottleLimits

__all__ = ["EMULATOR_KEY", "Emulator", "EmulatorConfig", "ThrottleLimits", "create_app"]
