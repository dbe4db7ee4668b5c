"""``$metadata``: a CSDL document of the emulated tables (keys, properties, navigations)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .metadata import Catalog

_EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
_EDM = "http://docs.oasis-open.org/odata/ns/edm"


def csdl(catalog: Catalog) -> bytes:
    """The service's CSDL XML."""
    root = ET.Element("edmx:Edmx", {"Version": "4.0", "xmlns:edmx": _EDMX})
    services = ET.SubElement(root, "edmx:DataServices")
    schema = ET.SubElement(
        services, "Schema", {"Namespace": "Microsoft.Dynamics.CRM", "Alias": "mscrm", "xmlns": _EDM}
    )
    for table in catalog.by_logical.values():
        entity = ET.SubElement(schema, "EntityType", {"Name": table.logical})
        key = ET.SubElement(entity, "Key")
        ET.SubElement(key, "PropertyRef", {"Name": table.primary_key})
        for col in table.columns.values():
            attrs = {"Name": col.name, "Type": col.type.edm}
            if col.max_length is not None:
                attrs["MaxLength"] = str(col.max_length)
            ET.SubElement(entity, "Property", attrs)
        for lookup in table.lookups.values():
            ET.SubElement(entity, "Property", {"Name": lookup.value_name, "Type": "Edm.Guid"})
            for nav, target in lookup.targets.items():
                if target in catalog.by_logical:
                    ET.SubElement(
                        entity, "NavigationProperty", {"Name": nav, "Type": f"mscrm.{target}"}
                    )
        if table.party_navigation is not None:
            ET.SubElement(
                entity,
                "NavigationProperty",
                {"Name": table.party_navigation, "Type": "Collection(mscrm.activityparty)"},
            )
    container = ET.SubElement(schema, "EntityContainer", {"Name": "System"})
    for table in catalog.by_logical.values():
        ET.SubElement(
            container,
            "EntitySet",
            {"Name": table.entity_set, "EntityType": f"Microsoft.Dynamics.CRM.{table.logical}"},
        )
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body
