"""Per-user email tracking settings, built from plain config and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from pipeline.rules.tracking_lookup import RecordRef
from schemas.types import AutoTrack

TRACKED_CATEGORY: Final = "Tracked to Dynamics 365"
MAX_TRACKED_FOLDERS: Final = 25
AUTO_TRACK_OPTIONS: Final[tuple[AutoTrack, ...]] = (
    "all",
    "replies",
    "from_crm_records",
    "from_email_enabled",
    "none",
)
_KEYS: Final = frozenset({"auto_track", "folders", "auto_create_contact", "category"})


class TrackingConfigError(ValueError):
    """Invalid tracking settings; the message names the setting."""


@dataclass(frozen=True, slots=True)
class TrackingSettings:
    """One user's tracking settings. ``folders`` maps a mail folder id to the record its mail
    is regarding (None: tracked without a regarding record). The tracking token's format is
    the organisation's (:class:`schemas.token.TrackingTokenFormat`), applied by the reader."""

    auto_track: AutoTrack = "replies"
    folders: Mapping[str, RecordRef | None] = field(default_factory=lambda: MappingProxyType({}))
    auto_create_contact: bool = False
    category: str = TRACKED_CATEGORY

    def __post_init__(self) -> None:
        if self.auto_track not in AUTO_TRACK_OPTIONS:
            raise TrackingConfigError(
                f"auto_track: {self.auto_track!r} is not one of {', '.join(AUTO_TRACK_OPTIONS)}"
            )
        if len(self.folders) > MAX_TRACKED_FOLDERS:
            raise TrackingConfigError(
                f"folders: {len(self.folders)} tracked folders; at most {MAX_TRACKED_FOLDERS}"
            )
        for folder_id, record in self.folders.items():
            if not isinstance(folder_id, str) or not 0 < len(folder_id.strip()) <= 512:
                raise TrackingConfigError(f"folders: bad folder id {folder_id!r}")
            if record is not None and not isinstance(record, RecordRef):
                raise TrackingConfigError(f"folders[{folder_id!r}]: expected a RecordRef")
        if not isinstance(self.auto_create_contact, bool):
            raise TrackingConfigError("auto_create_contact: expected a boolean")
        if not isinstance(self.category, str) or not self.category.strip():
            raise TrackingConfigError("category: expected a non-empty string")

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> TrackingSettings:
        """Settings from plain config, e.g. ``{"auto_track": "all", "folders": {"AAMk..":
        {"table": "account", "id": "<guid>"}}}``; unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise TrackingConfigError(f"expected an object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in _KEYS)
        if unknown:
            raise TrackingConfigError(f"unknown setting(s) {unknown}; known: {sorted(_KEYS)}")
        raw_folders = data.get("folders", {})
        if not isinstance(raw_folders, Mapping):
            raise TrackingConfigError("folders: expected an object folder id -> record")
        folders: dict[str, RecordRef | None] = {}
        for folder_id, record in raw_folders.items():
            folders[folder_id] = _record(f"folders[{folder_id!r}]", record)
        return cls(
            auto_track=data.get("auto_track", "replies"),
            folders=MappingProxyType(folders),
            auto_create_contact=data.get("auto_create_contact", False),
            category=data.get("category", TRACKED_CATEGORY),
        )


def _record(where: str, value: Any) -> RecordRef | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"table", "id"}:
        raise TrackingConfigError(f'{where}: expected {{"table", "id"}} or null')
    row_id = value["id"]
    try:
        return RecordRef(
            value["table"], row_id.strip("{}").lower() if isinstance(row_id, str) else row_id
        )
    except ValueError as exc:
        raise TrackingConfigError(f"{where}: {exc}") from None
