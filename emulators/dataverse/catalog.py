"""The tables Dynasync uses, with their real logical names, keys, columns and navigations."""

from __future__ import annotations

from dataclasses import replace

from .metadata import Catalog, ColType, Column, Lookup, Options, State, Table

S, M, INT, B, DT, D, G = (
    ColType.STRING,
    ColType.MEMO,
    ColType.INT,
    ColType.BOOL,
    ColType.DATETIME,
    ColType.DATE,
    ColType.GUID,
)

ACTIVITY_TABLES = (
    "appointment",
    "recurringappointmentmaster",
    "task",
    "phonecall",
    "letter",
    "fax",
    "email",
)
PARTY_TARGETS = ("systemuser", "contact", "account", "lead")

PRIORITY: Options = ((0, "Low"), (1, "Normal"), (2, "High"))
INSTANCE_TYPE: Options = (
    (0, "Not Recurring"),
    (1, "Recurring Master"),
    (2, "Recurring Instance"),
    (3, "Recurring Exception"),
)
PATTERN_TYPE: Options = ((0, "Daily"), (1, "Weekly"), (2, "Monthly"), (3, "Yearly"))
PATTERN_END: Options = ((1, "No End Date"), (2, "Number of Occurrences"), (3, "End By Date"))
CORRELATION: Options = (
    (0, "None"),
    (1, "Skipped"),
    (2, "XHeader"),
    (3, "InReplyTo"),
    (4, "TrackingToken"),
    (5, "ConversationIndex"),
    (6, "SmartMatching"),
    (7, "CustomCorrelation"),
)
PARTICIPATION: Options = (
    (1, "Sender"),
    (2, "To Recipient"),
    (3, "CC Recipient"),
    (4, "BCC Recipient"),
    (5, "Required attendee"),
    (6, "Optional attendee"),
    (7, "Organizer"),
    (8, "Regarding"),
    (9, "Owner"),
    (10, "Resource"),
    (11, "Customer"),
)
DIRECTION = ("Incoming", "Outgoing")

ACTIVE_INACTIVE = (
    State(0, "Active", 1, ((1, "Active"),)),
    State(1, "Inactive", 2, ((2, "Inactive"),)),
)
_OPEN_COMPLETED_CANCELED = {
    "phonecall": (((1, "Open"),), ((2, "Made"), (4, "Received")), 3, ((3, "Canceled"),)),
    "letter": (((1, "Open"), (2, "Draft")), ((3, "Received"), (4, "Sent")), 5, ((5, "Canceled"),)),
    "fax": (
        ((1, "Open"),),
        ((2, "Completed"), (3, "Sent"), (4, "Received")),
        5,
        ((5, "Canceled"),),
    ),
    "email": (
        ((1, "Draft"), (8, "Failed")),
        ((2, "Completed"), (3, "Sent"), (4, "Received"), (6, "Pending Send"), (7, "Sending")),
        5,
        ((5, "Canceled"),),
    ),
    "task": (
        ((2, "Not Started"), (3, "In Progress"), (4, "Waiting on someone else"), (7, "Deferred")),
        ((5, "Completed"),),
        6,
        ((6, "Canceled"),),
    ),
}
_APPOINTMENT_STATES = (
    State(0, "Open", 1, ((1, "Free"), (2, "Tentative"))),
    State(1, "Completed", 3, ((3, "Completed"),)),
    State(2, "Canceled", 4, ((4, "Canceled"),)),
    State(3, "Scheduled", 5, ((5, "Busy"), (6, "Out of Office"))),
)
LEAD_STATES = (
    State(0, "Open", 1, ((1, "New"), (2, "Contacted"))),
    State(1, "Qualified", 3, ((3, "Qualified"),)),
    State(
        2,
        "Disqualified",
        4,
        ((4, "Lost"), (5, "Cannot Contact"), (6, "No Longer Interested"), (7, "Canceled")),
    ),
)
OBJECT_TYPE_CODES = {
    "account": 1,
    "contact": 2,
    "lead": 4,
    "systemuser": 8,
    "activityparty": 135,
    "organization": 1019,
    "savedquery": 1039,
    "appointment": 4201,
    "email": 4202,
    "fax": 4204,
    "letter": 4207,
    "phonecall": 4210,
    "task": 4212,
    "userquery": 4230,
    "recurringappointmentmaster": 4251,
}
DISPLAY = {
    "systemuser": ("User", "Users"),
    "organization": ("Organization", "Organizations"),
    "contact": ("Contact", "Contacts"),
    "account": ("Account", "Accounts"),
    "lead": ("Lead", "Leads"),
    "appointment": ("Appointment", "Appointments"),
    "recurringappointmentmaster": ("Recurring Appointment", "Recurring Appointments"),
    "task": ("Task", "Tasks"),
    "phonecall": ("Phone Call", "Phone Calls"),
    "letter": ("Letter", "Letters"),
    "fax": ("Fax", "Faxes"),
    "email": ("Email", "Email Messages"),
    "activityparty": ("Activity Party", "Activity Parties"),
    "userquery": ("Saved View", "Saved Views"),
    "savedquery": ("View", "Views"),
}


def activity_states(logical: str) -> tuple[State, ...]:
    """The statecode / statuscode options of an activity table."""
    if logical in ("appointment", "recurringappointmentmaster"):
        return _APPOINTMENT_STATES
    open_, done, canceled_default, canceled = _OPEN_COMPLETED_CANCELED[logical]
    return (
        State(0, "Open", open_[0][0], open_),
        State(1, "Completed", done[0][0], done),
        State(2, "Canceled", canceled_default, canceled),
    )


def _s(name: str, length: int = 100) -> Column:
    return Column(name, S, max_length=length)


def _system_columns(pk: str) -> list[Column]:
    return [
        Column(pk, G),
        Column("versionnumber", ColType.BIGINT, read_only=True),
        Column("createdon", DT, read_only=True),
        Column("modifiedon", DT, read_only=True),
        Column("statecode", INT, min_value=0, max_value=10),
        Column("statuscode", INT, min_value=-1, max_value=1_000_000_000),
    ]


def _owner_lookups() -> list[Lookup]:
    return [
        Lookup("ownerid", {"ownerid": "systemuser"}),
        Lookup("createdby", {"createdby": "systemuser"}, bindable=False),
        Lookup("modifiedby", {"modifiedby": "systemuser"}, bindable=False),
    ]


def _address(prefix: str) -> list[Column]:
    return [
        _s(f"{prefix}_line1", 250),
        _s(f"{prefix}_line2", 250),
        _s(f"{prefix}_line3", 250),
        _s(f"{prefix}_city", 80),
        _s(f"{prefix}_stateorprovince", 50),
        _s(f"{prefix}_postalcode", 20),
        _s(f"{prefix}_country", 80),
    ]


def _contact() -> Table:
    names = [
        "firstname",
        "middlename",
        "lastname",
        "suffix",
        "salutation",
        "yomifirstname",
        "yomilastname",
        "nickname",
        "jobtitle",
        "department",
        "managername",
        "assistantname",
        "spousesname",
        "emailaddress1",
        "emailaddress2",
        "emailaddress3",
        "telephone1",
        "business2",
        "telephone2",
        "home2",
        "mobilephone",
        "telephone3",
        "fax",
        "pager",
        "callback",
        "company",
        "assistantphone",
        "governmentid",
        "ftpsiteurl",
        "websiteurl",
    ]
    cols = [
        *_system_columns("contactid"),
        *[_s(n) for n in names],
        Column("fullname", S, max_length=160, read_only=True),
        Column("childrensnames", S, max_length=255),
        Column("birthdate", D),
        Column("anniversary", D),
        Column("description", M, max_length=2000),
        *_address("address1"),
        *_address("address2"),
        *_address("address3"),
    ]
    lookups = [
        *_owner_lookups(),
        Lookup(
            "parentcustomerid",
            {"parentcustomerid_account": "account", "parentcustomerid_contact": "contact"},
        ),
    ]
    return Table.build(
        "contact",
        "contacts",
        "contactid",
        "fullname",
        "Contact",
        cols,
        lookups,
        user_owned=True,
        computed_fullname=True,
    )


def _account() -> Table:
    cols = [
        *_system_columns("accountid"),
        _s("name", 160),
        _s("accountnumber", 20),
        _s("telephone1", 50),
        _s("fax", 50),
        _s("emailaddress1", 100),
        _s("websiteurl", 200),
        Column("description", M, max_length=2000),
        *_address("address1"),
    ]
    lookups = [
        *_owner_lookups(),
        Lookup("primarycontactid", {"primarycontactid": "contact"}),
        Lookup("parentaccountid", {"parentaccountid": "account"}),
    ]
    return Table.build(
        "account", "accounts", "accountid", "name", "Account", cols, lookups, user_owned=True
    )


def _lead() -> Table:
    cols = [
        *_system_columns("leadid"),
        _s("firstname", 50),
        _s("lastname", 50),
        Column("fullname", S, max_length=160, read_only=True),
        _s("subject", 300),
        _s("companyname", 100),
        _s("emailaddress1", 100),
        _s("telephone1", 50),
        _s("mobilephone", 50),
        _s("jobtitle", 100),
        Column("description", M, max_length=2000),
    ]
    lookups = [
        *_owner_lookups(),
        Lookup("parentaccountid", {"parentaccountid": "account"}),
        Lookup("parentcontactid", {"parentcontactid": "contact"}),
    ]
    return Table.build(
        "lead",
        "leads",
        "leadid",
        "fullname",
        "Lead",
        cols,
        lookups,
        user_owned=True,
        computed_fullname=True,
    )


def _systemuser() -> Table:
    cols = [
        *_system_columns("systemuserid"),
        _s("fullname", 200),
        _s("firstname", 64),
        _s("lastname", 64),
        _s("internalemailaddress", 100),
        Column("azureactivedirectoryobjectid", G),
        _s("domainname", 1024),
        Column("isdisabled", B),
    ]
    lookups = [Lookup("businessunitid", {"businessunitid": "businessunit"}, bindable=False)]
    return Table.build(
        "systemuser",
        "systemusers",
        "systemuserid",
        "fullname",
        "SystemUser",
        cols,
        lookups,
        user_owned=False,
    )


def _organization() -> Table:
    cols = [
        *_system_columns("organizationid"),
        _s("name", 160),
        Column("expirechangetrackingindays", INT, min_value=1, max_value=365),
    ]
    return Table.build(
        "organization",
        "organizations",
        "organizationid",
        "name",
        "Organization",
        cols,
        [],
        user_owned=False,
    )


def _query_table(logical: str, user_owned: bool) -> Table:
    cols = [
        *_system_columns(f"{logical}id"),
        _s("name", 200),
        Column("fetchxml", M, max_length=1_048_576),
        Column("layoutxml", M, max_length=1_048_576),
        Column("querytype", INT, min_value=0, max_value=1_000_000),
        _s("returnedtypecode", 64),
        Column("description", M, max_length=2000),
        Column("isdefault", B),
    ]
    lookups = _owner_lookups() if user_owned else []
    schema = "UserQuery" if logical == "userquery" else "SavedQuery"
    return Table.build(
        logical,
        logical.removesuffix("y") + "ies",
        f"{logical}id",
        "name",
        schema,
        cols,
        lookups,
        user_owned=user_owned,
    )


_ACTIVITY_EXTRA: dict[str, list[Column]] = {
    "appointment": [
        _s("location", 200),
        Column("isalldayevent", B),
        Column("globalobjectid", S, max_length=300),
        Column("instancetypecode", INT, min_value=0, max_value=3, options=INSTANCE_TYPE),
        _s("category", 250),
        _s("subcategory", 250),
    ],
    "recurringappointmentmaster": [
        _s("location", 200),
        Column("isalldayevent", B),
        Column("globalobjectid", S, max_length=300),
        Column("recurrencepatterntype", INT, min_value=0, max_value=3, options=PATTERN_TYPE),
        Column("interval", INT, min_value=1, max_value=1000),
        Column("daysofweekmask", INT, min_value=0, max_value=127),
        Column("isweekdaypattern", B),
        Column("dayofmonth", INT, min_value=0, max_value=31),
        Column("monthofyear", INT, min_value=0, max_value=12),
        Column("instance", INT, min_value=0, max_value=5),
        Column("isnthmonthly", B),
        Column("isnthyearly", B),
        Column("firstdayofweek", INT, min_value=0, max_value=6),
        Column("patternendtype", INT, min_value=1, max_value=3, options=PATTERN_END),
        Column("patternstartdate", DT),
        Column("patternenddate", DT),
        Column("occurrences", INT, min_value=0, max_value=999),
        Column("starttime", DT),
        Column("endtime", DT),
        Column("duration", INT, min_value=0, max_value=100_000),
    ],
    "task": [
        Column("percentcomplete", INT, min_value=0, max_value=100),
        _s("category", 250),
        _s("subcategory", 250),
    ],
    "phonecall": [_s("phonenumber", 200), Column("directioncode", B, bool_labels=DIRECTION)],
    "letter": [
        Column("address", M, max_length=4000),
        Column("directioncode", B, bool_labels=DIRECTION),
    ],
    "fax": [
        _s("faxnumber", 200),
        Column("numberofpages", INT, min_value=0, max_value=1_000_000),
        Column("directioncode", B, bool_labels=DIRECTION),
    ],
    "email": [
        Column("directioncode", B, bool_labels=DIRECTION),
        Column("messageid", S, max_length=320),
        Column("inreplyto", S, max_length=320),
        Column("trackingtoken", S, max_length=50),
        Column("senton", DT),
        Column("conversationtrackingid", G),
        Column("correlationmethod", INT, min_value=0, max_value=7, options=CORRELATION),
        Column("sender", S, max_length=250),
        Column("torecipients", S, max_length=500),
        Column("readreceiptrequested", B),
    ],
}

_ACTIVITY_STATE = {
    "appointment": (3, 5),
    "task": (0, 2),
    "recurringappointmentmaster": (0, 1),
    "phonecall": (0, 1),
    "letter": (0, 1),
    "fax": (0, 1),
    "email": (0, 1),
}

_ACTIVITY_SCHEMA = {
    "appointment": "Appointment",
    "recurringappointmentmaster": "RecurringAppointmentMaster",
    "task": "Task",
    "phonecall": "PhoneCall",
    "letter": "Letter",
    "fax": "Fax",
    "email": "Email",
}


def _activity(logical: str) -> Table:
    desc_len = 1_048_576 if logical == "email" else 2000
    subject_len = 800 if logical == "email" else 200
    cols = [
        *_system_columns("activityid"),
        Column("subject", S, max_length=subject_len),
        Column("description", M, max_length=desc_len),
        Column("scheduledstart", DT),
        Column("scheduledend", DT),
        Column("scheduleddurationminutes", INT, min_value=0, max_value=2_147_483_647),
        Column("actualstart", DT),
        Column("actualend", DT),
        Column("actualdurationminutes", INT, min_value=0, max_value=2_147_483_647),
        Column("prioritycode", INT, min_value=0, max_value=2, options=PRIORITY),
        Column("activitytypecode", S, max_length=64, read_only=True),
        *_ACTIVITY_EXTRA[logical],
    ]
    regarding = Lookup(
        "regardingobjectid",
        {f"regardingobjectid_{t}_{logical}": t for t in ("contact", "account", "lead")},
    )
    return Table.build(
        logical,
        f"{logical}s" if logical != "fax" else "faxes",
        "activityid",
        "subject",
        _ACTIVITY_SCHEMA[logical],
        cols,
        [*_owner_lookups(), regarding],
        user_owned=True,
        party_navigation=f"{logical}_activity_parties",
        default_state=_ACTIVITY_STATE[logical],
    )


def _activityparty() -> Table:
    cols = [
        *_system_columns("activitypartyid"),
        Column("participationtypemask", INT, min_value=1, max_value=12, options=PARTICIPATION),
        Column("addressused", S, max_length=320),
        Column("ispartydeleted", B, read_only=True),
    ]
    lookups = [
        Lookup("partyid", {f"partyid_{t}": t for t in PARTY_TARGETS}),
        Lookup("activityid", {f"activityid_{t}": t for t in ACTIVITY_TABLES}, bindable=False),
    ]
    return Table.build(
        "activityparty",
        "activityparties",
        "activitypartyid",
        "addressused",
        "ActivityParty",
        cols,
        lookups,
        user_owned=False,
    )


def _described(table: Table) -> Table:
    """``table`` with what its definition (``EntityDefinitions``) shows besides its columns."""
    states: tuple[State, ...]
    if table.logical == "lead":
        states = LEAD_STATES
    elif table.logical in ACTIVITY_TABLES:
        states = activity_states(table.logical)
    else:
        states = ACTIVE_INACTIVE
    name, collection = DISPLAY[table.logical]
    return replace(
        table,
        object_type_code=OBJECT_TYPE_CODES[table.logical],
        display_name=name,
        display_collection_name=collection,
        states=states,
    )


def build_catalog() -> Catalog:
    """The emulator's tables."""
    tables = [
        _systemuser(),
        _organization(),
        _contact(),
        _account(),
        _lead(),
        *[_activity(a) for a in ACTIVITY_TABLES],
        _activityparty(),
        _query_table("userquery", user_owned=True),
        _query_table("savedquery", user_owned=False),
    ]
    return Catalog([_described(t) for t in tables])
