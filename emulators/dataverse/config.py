"""Configuration of the Dataverse emulator."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

DEFAULT_APP_USER_ID = "00000000-0000-4000-8000-00000000a001"
DEFAULT_ORGANIZATION_ID = "00000000-0000-4000-8000-00000000c001"
DEFAULT_BUSINESS_UNIT_ID = "00000000-0000-4000-8000-00000000b001"


def is_guid(text: str) -> bool:
    """True when ``text`` is a GUID in the 8-4-4-4-12 form."""
    return bool(_GUID.match(text))


@dataclass(frozen=True)
class ThrottleLimits:
    """Service protection limits, per user (Dataverse defaults)."""

    requests_per_window: int = 6000
    window_seconds: float = 300.0
    max_concurrent: int = 52
    execution_ms_per_window: int = 1_200_000

    def __post_init__(self) -> None:
        if self.requests_per_window < 1:
            raise ValueError("requests_per_window must be >= 1")
        if not self.window_seconds > 0 or not math.isfinite(self.window_seconds):
            raise ValueError("window_seconds must be a positive number")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if self.execution_ms_per_window < 1:
            raise ValueError("execution_ms_per_window must be >= 1")

    def scaled(self, factor: float) -> ThrottleLimits:
        """Limits with every count multiplied by ``factor`` (each at least 1)."""
        if not factor > 0 or not math.isfinite(factor):
            raise ValueError("throttle scale must be a positive finite number")
        return ThrottleLimits(
            requests_per_window=max(1, round(self.requests_per_window * factor)),
            window_seconds=self.window_seconds,
            max_concurrent=max(1, round(self.max_concurrent * factor)),
            execution_ms_per_window=max(1, round(self.execution_ms_per_window * factor)),
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator needs; build the app with ``create_app(config)``.

    ``base_url`` is the origin used in absolute links (``@odata.context``, ``nextLink``,
    ``OData-EntityId``); ``None`` takes it from each request's Host.
    """

    base_url: str | None = None
    throttle: ThrottleLimits = field(default_factory=ThrottleLimits)
    throttle_enabled: bool = True
    expiry_days: int = 7
    default_page_size: int = 5000
    max_batch_operations: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    app_user_id: str = DEFAULT_APP_USER_ID
    organization_id: str = DEFAULT_ORGANIZATION_ID
    business_unit_id: str = DEFAULT_BUSINESS_UNIT_ID
    accepted_tokens: frozenset[str] = frozenset()
    fault_seed: int | None = None

    def __post_init__(self) -> None:
        if self.base_url is not None and not re.match(r"^https?://[^/\s]+$", self.base_url):
            raise ValueError(
                f"base_url must look like http(s)://host[:port] with no path, got {self.base_url!r}"
            )
        if not 1 <= self.expiry_days <= 365:
            raise ValueError("expiry_days must be between 1 and 365")
        if not 1 <= self.default_page_size <= 5000:
            raise ValueError("default_page_size must be between 1 and 5000")
        if not 1 <= self.max_batch_operations <= 1000:
            raise ValueError("max_batch_operations must be between 1 and 1000")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        for name in ("app_user_id", "organization_id", "business_unit_id"):
            if not is_guid(getattr(self, name)):
                raise ValueError(f"{name} must be a GUID")
