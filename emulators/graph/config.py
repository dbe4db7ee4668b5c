"""Configuration of the Microsoft Graph emulator."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field


def _positive(name: str, value: float) -> None:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class ThrottleLimits:
    """Per app + mailbox limits (Graph's Outlook service defaults)."""

    requests_per_window: int = 10_000
    window_seconds: float = 600.0
    max_concurrent: int = 4

    def __post_init__(self) -> None:
        if self.requests_per_window < 1:
            raise ValueError("requests_per_window must be >= 1")
        _positive("window_seconds", self.window_seconds)
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")

    def scaled(self, factor: float) -> ThrottleLimits:
        """Limits with both counts multiplied by ``factor`` (each at least 1)."""
        _positive("throttle scale", factor)
        return ThrottleLimits(
            requests_per_window=max(1, round(self.requests_per_window * factor)),
            window_seconds=self.window_seconds,
            max_concurrent=max(1, round(self.max_concurrent * factor)),
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator needs; build the app with ``create_app(config)``.

    ``base_url`` is the origin used in absolute links (``@odata.context``, ``@odata.nextLink``);
    ``None`` takes it from each request's scheme and Host. ``notify_time_scale`` multiplies
    every notification retry delay (0.001 makes Graph's minutes into milliseconds).
    ``accepted_tokens`` empty means any non-empty bearer token is accepted.
    """

    base_url: str | None = None
    tenant_id: str = "00000000-0000-4000-8000-0000000e0001"
    throttle: ThrottleLimits = field(default_factory=ThrottleLimits)
    throttle_enabled: bool = True
    notify_time_scale: float = 1.0
    notify_max_attempts: int = 6
    notify_timeout_seconds: float = 3.0
    validation_timeout_seconds: float = 10.0
    default_page_size: int = 10
    max_page_size: int = 1000
    max_top: int = 1000
    max_batch_requests: int = 20
    max_body_bytes: int = 4 * 1024 * 1024
    accepted_tokens: frozenset[str] = frozenset()
    fault_seed: int | None = None

    def __post_init__(self) -> None:
        if self.base_url is not None and not re.match(r"^https?://[^/\s]+$", self.base_url):
            raise ValueError(
                f"base_url must look like http(s)://host[:port] with no path, got {self.base_url!r}"
            )
        _positive("notify_time_scale", self.notify_time_scale)
        _positive("notify_timeout_seconds", self.notify_timeout_seconds)
        _positive("validation_timeout_seconds", self.validation_timeout_seconds)
        if self.notify_max_attempts < 1:
            raise ValueError("notify_max_attempts must be >= 1")
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ValueError("default_page_size must be between 1 and max_page_size")
        if self.max_top < 1:
            raise ValueError("max_top must be >= 1")
        if not 1 <= self.max_batch_requests <= 100:
            raise ValueError("max_batch_requests must be between 1 and 100")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be >= 1024")
