"""Pure sync rules: FetchXML filters, templates, field directions, 3-way merge, deletes,
email tracking. No I/O; the planner and the stages call these."""

from pipeline.rules.deletes import DELETE_DECISIONS, DeleteDecision, DeleteFacts, decide_delete
from pipeline.rules.directions import (
    RECURRING_ADJUSTABLE,
    DirectionsError,
    FieldDirections,
)
from pipeline.rules.fetchxml import (
    MAX_FETCHXML_CHARS,
    Condition,
    EvalContext,
    FetchQuery,
    FetchXmlError,
    Filter,
    LinkEntity,
    parse_fetchxml,
)
from pipeline.rules.filterset import FilterSet
from pipeline.rules.merge import (
    ConflictRecord,
    FieldDecision,
    MergeResult,
    merge,
    mirror_policy,
)
from pipeline.rules.templates import (
    MY_ACTIVE_CONTACTS,
    SYSTEM_TEMPLATES,
    Template,
    default_filters,
    instantiate,
)
from pipeline.rules.tracking import (
    Address,
    ContactDraft,
    EmailFacts,
    TrackDecision,
    TrackReason,
    correlate,
    parse_name,
    should_track,
)
from pipeline.rules.tracking_lookup import (
    RESOLUTION_ORDER,
    CrmEmail,
    InMemoryTrackingLookup,
    RecordRef,
    StoredEmail,
    TrackingLookup,
)
from pipeline.rules.tracking_settings import (
    MAX_TRACKED_FOLDERS,
    TRACKED_CATEGORY,
    TrackingConfigError,
    TrackingSettings,
)

__all__ = [
    "DELETE_DECISIONS",
    "MAX_FETCHXML_CHARS",
    "MAX_TRACKED_FOLDERS",
    "MY_ACTIVE_CONTACTS",
    "RECURRING_ADJUSTABLE",
    "RESOLUTION_ORDER",
    "SYSTEM_TEMPLATES",
    "TRACKED_CATEGORY",
    "Address",
    "Condition",
    "ConflictRecord",
    "ContactDraft",
    "CrmEmail",
    "DeleteDecision",
    "DeleteFacts",
    "DirectionsError",
    "EmailFacts",
    "EvalContext",
    "FetchQuery",
    "FetchXmlError",
    "FieldDecision",
    "FieldDirections",
    "Filter",
    "FilterSet",
    "InMemoryTrackingLookup",
    "LinkEntity",
    "MergeResult",
    "RecordRef",
    "StoredEmail",
    "Template",
    "TrackDecision",
    "TrackReason",
    "TrackingConfigError",
    "TrackingLookup",
    "TrackingSettings",
    "correlate",
    "decide_delete",
    "default_filters",
    "instantiate",
    "merge",
    "mirror_policy",
    "parse_fetchxml",
    "parse_name",
    "should_track",
]
