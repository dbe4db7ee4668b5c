"""A stateful emulator of the Microsoft Graph v1.0 API (stdlib + aiohttp + orjson only)."""

from .app import EMULATOR_KEY, create_app
from .config import EmulatorConfig, ThrottleLimits

__all__ = ["EMULATOR_KEY", "EmulatorConfig", "ThrottleLimits", "create_app"]
