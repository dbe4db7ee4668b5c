"""The error raised when bytes at the edge are not a valid message."""

from __future__ import annotations


class SchemaError(ValueError):
    """Input that does not match its contract. ``field`` is a dotted path, or "" for the root."""

    def __init__(self, model: str, field: str, reason: str) -> None:
        self.model = model
        self.field = field
        self.reason = reason
        where = field or "<root>"
        super().__init__(f"invalid {model}: {where}: {reason}")
