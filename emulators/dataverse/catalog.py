"""The tables Dynasync uses, with their real logical names, keys, columns and navigations."""

from __future__ import annotations

from .metadata import Catalog, ColType, Column, Lookup, Table

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
        Column("instancetypecode", INT, min_value=0, max_value=3),
        _s("category", 250),
        _s("subcategory", 250),
    ],
    "recurringappointmentmaster": [
        _s("location", 200),
        Column("isalldayevent", B),
        Column("globalobjectid", S, max_length=300),
        Column("recurrencepatterntype", INT, min_value=0, max_value=3),
        Column("interval", INT, min_value=1, max_value=1000),
        Column("daysofweekmask", INT, min_value=0, max_value=127),
        Column("isweekdaypattern", B),
        Column("dayofmonth", INT, min_value=0, max_value=31),
        Column("monthofyear", INT, min_value=0, max_value=12),
        Column("instance", INT, min_value=0, max_value=5),
        Column("isnthmonthly", B),
        Column("isnthyearly", B),
        Column("firstdayofweek", INT, min_value=0, max_value=6),
        Column("patternendtype", INT, min_value=1, max_value=3),
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
    "phonecall": [_s("phonenumber", 200), Column("directioncode", B)],
    "letter": [Column("address", M, max_length=4000), Column("directioncode", B)],
    "fax": [
        _s("faxnumber", 200),
        Column("numberofpages", INT, min_value=0, max_value=1_000_000),
        Column("directioncode", B),
    ],
    "email": [
        Column("directioncode", B),
        Column("messageid", S, max_length=320),
        Column("inreplyto", S, max_length=320),
        Column("trackingtoken", S, max_length=50),
        Column("senton", DT),
        Column("conversationtrackingid", G),
        Column("correlationmethod", INT, min_value=0, max_value=7),
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
        Column("prioritycode", INT, min_value=0, max_value=2),
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
        Column("participationtypemask", INT, min_value=1, max_value=12),
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


def build_catalog() -> Catalog:
    """The emulator's tables."""
    return Catalog(
        [
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
    )
