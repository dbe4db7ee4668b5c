"""Open extension bodies: validation and Graph JSON (shared by tasks, ``$expand`` and routes)."""

from __future__ import annotations

from typing import Any

from .errors import GraphError
from .store import Entity

KIND = "openTypeExtension"
ODATA_TYPE = "microsoft.graph.openTypeExtension"
_MAX_NAME = 100


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def parse(body: Any) -> tuple[str, dict[str, Any]]:
    """Validate one open extension body; returns its name and its custom data (Graph's 400)."""
    if not isinstance(body, dict):
        raise GraphError(400, "RequestBodyRead", "An open extension must be a JSON object.")
    odata_type = body.get("@odata.type")
    if odata_type is not None and str(odata_type).lstrip("#") != ODATA_TYPE:
        raise GraphError(
            400, "RequestBodyRead", f"'{odata_type}' is not microsoft.graph.openTypeExtension."
        )
    name = body.get("extensionName")
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise GraphError(400, "RequestBodyRead", "extensionName is required (1-100 characters).")
    data: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("@odata.") or key in ("extensionName", "id"):
            continue
        ok = _primitive(value) or (
            isinstance(value, list) and all(_primitive(v) and v is not None for v in value)
        )
        if not ok:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The value of '{key}' must be a primitive type or an array of primitive types.",
            )
        data[key] = value
    return name, data


def validate_list(value: Any) -> str | None:
    """A schema check for an inline ``extensions`` collection."""
    if not isinstance(value, list):
        return "Cannot convert the literal to 'Collection(microsoft.graph.extension)'."
    names: set[str] = set()
    for item in value:
        try:
            name, _ = parse(item)
        except GraphError as exc:
            return exc.message
        if name.lower() in names:
            return f"The extension '{name}' is given twice."
        names.add(name.lower())
    return None


def render_extension(entity: Entity) -> dict[str, Any]:
    """The Graph JSON of a stored open extension."""
    name = entity.props["extensionName"]
    data = {k: v for k, v in entity.props.items() if k != "extensionName"}
    return {"@odata.type": f"#{ODATA_TYPE}", "id": name, "extensionName": name, **data}
