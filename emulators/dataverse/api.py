"""The Web API dispatcher: path routing, CRUD with conditional headers, service documents."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from .config import EmulatorConfig, is_guid
from .csdl import csdl
from .definitions import Definitions
from .errors import (
    CONCURRENCY_VERSION_MISMATCH,
    DUPLICATE_RECORD,
    INVALID_ARGUMENT,
    RESOURCE_NOT_FOUND,
    ApiError,
    bad_request,
    not_found,
)
from .messages import ODATA_HEADERS, ApiRequest, ApiResponse, Prefer, parse_prefer
from .metadata import Catalog, Table
from .query import parse_options
from .reads import Reader
from .security import Caller, resolve_caller
from .serialize import context_url, entity_url, etag, render
from .store import Row, Store
from .writes import ContentIdResolver, PayloadParser, Writer, parse_json_object

_PATH = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_.]*)(?:\((?P<key>[^()]*)\))?$")
_VERSION_MISMATCH = (
    "The version of the existing record doesn't match the RowVersion property provided."
)


class Api:
    """Executes ApiRequests against the store (used directly and by ``$batch``)."""

    def __init__(
        self, config: EmulatorConfig, catalog: Catalog, store: Store, clock: Callable[[], datetime]
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.store = store
        self.clock = clock
        self.writer = Writer(store, catalog, clock)
        self.reader = Reader(store, catalog, clock, config.default_page_size, config.expiry_days)
        self.definitions = Definitions(catalog)

    def caller(self, request: ApiRequest) -> Caller:
        """Who the request runs as."""
        return resolve_caller(request.headers, self.store, self.config.app_user_id)

    def handle(
        self,
        request: ApiRequest,
        root: str,
        content_ids: dict[str, tuple[str, str]] | None = None,
    ) -> ApiResponse:
        """Answer one request (ApiError for failures)."""
        ids = content_ids if content_ids is not None else {}
        path = request.path
        if path.startswith("$") and path not in ("$metadata", "$batch"):
            ref, _, rest = path.partition("/")
            if ref not in ids:
                raise bad_request(f"The Content-ID reference '{ref}' was not found.")
            entity_set, row_id = ids[ref]
            path = f"{entity_set}({row_id})" + (f"/{rest}" if rest else "")
        if path in ("", "/"):
            return self._service_document(root, request)
        if path == "$metadata":
            if request.method != "GET":
                raise _not_allowed(request.method, path)
            headers = {**ODATA_HEADERS, "Content-Type": "application/xml"}
            return ApiResponse(200, headers, csdl(self.catalog))
        if path in ("WhoAmI", "WhoAmI()"):
            return self._who_am_i(root, request)
        if Definitions.handles(path):
            if request.method != "GET":
                raise _not_allowed(request.method, path)
            return self.definitions.get(path, request.query, root)
        match = _PATH.match(path)
        if match is None:
            raise bad_request(f"The request URI segment '{path[:120]}' is not supported.")
        table = self.catalog.by_set.get(match.group("set"))
        if table is None:
            raise ApiError(
                404,
                RESOURCE_NOT_FOUND,
                f"Resource not found for the segment '{match.group('set')}'.",
            )
        key = match.group("key")
        prefer = parse_prefer(request.headers)
        opts = parse_options(request.query, table, self.catalog)
        caller = self.caller(request)
        if request.method != "GET" and table.logical == "activityparty":
            verb = {"POST": "Create", "PATCH": "Update", "DELETE": "Delete"}.get(
                request.method, request.method
            )
            raise bad_request(
                f"The '{verb}' method does not support entities of type 'activityparty'; "
                "write parties through the activity's <activity>_activity_parties collection.",
                code=INVALID_ARGUMENT,
            )
        if key is None:
            if request.method == "GET":
                return self.reader.collection(root, table, opts, prefer)
            if request.method == "POST":
                return self._create(root, request, table, prefer, caller, ids)
            raise _not_allowed(request.method, path)
        row_id = key.strip().lower()
        if "=" in row_id or not is_guid(row_id):
            raise bad_request(
                f"The key value '{key[:80]}' is not a valid {table.primary_key}; "
                "a GUID is expected."
            )
        if opts.deltatoken is not None or opts.skiptoken is not None:
            raise bad_request("$deltatoken and $skiptoken apply only to collections.")
        if request.method == "GET":
            return self.reader.entity(
                root, table, row_id, opts, prefer, request.headers.get("If-None-Match")
            )
        if request.method == "PATCH":
            return self._upsert(root, request, table, row_id, prefer, caller, ids)
        if request.method == "DELETE":
            return self._delete(request, table, row_id, caller)
        raise _not_allowed(request.method, path)

    def _parser(self, ids: dict[str, tuple[str, str]]) -> PayloadParser:
        resolve: ContentIdResolver = ids.get
        return PayloadParser(self.catalog, resolve)

    def _create(
        self,
        root: str,
        request: ApiRequest,
        table: Table,
        prefer: Prefer,
        caller: Caller,
        ids: dict[str, tuple[str, str]],
    ) -> ApiResponse:
        changes = self._parser(ids).parse(table, parse_json_object(request.body))
        with self.store.atomic():
            row = self.writer.create(table, changes, caller, None)
        return self._written(root, request, table, row, prefer, 201)

    def _upsert(
        self,
        root: str,
        request: ApiRequest,
        table: Table,
        row_id: str,
        prefer: Prefer,
        caller: Caller,
        ids: dict[str, tuple[str, str]],
    ) -> ApiResponse:
        changes = self._parser(ids).parse(table, parse_json_object(request.body))
        current = self.store.get(table.logical, row_id)
        if_match = request.headers.get("If-Match")
        if_none_match = request.headers.get("If-None-Match")
        if if_match is not None and if_none_match is not None:
            raise bad_request("If-Match and If-None-Match cannot be used together.")
        if if_match is not None:
            if current is None:
                raise not_found(table.logical, row_id)
            _check_if_match(if_match, current)
        if if_none_match is not None:
            if if_none_match.strip() != "*":
                raise bad_request("Only If-None-Match: * is supported on PATCH.")
            if current is not None:
                raise ApiError(
                    412, DUPLICATE_RECORD, "A record with matching key values already exists."
                )
        with self.store.atomic():
            if current is None:
                row, status = self.writer.create(table, changes, caller, row_id), 201
            else:
                row, status = self.writer.update(table, current, changes, caller), 200
        return self._written(root, request, table, row, prefer, status)

    def _delete(
        self, request: ApiRequest, table: Table, row_id: str, caller: Caller
    ) -> ApiResponse:
        current = self.store.get(table.logical, row_id)
        if current is None:
            raise not_found(table.logical, row_id)
        if_match = request.headers.get("If-Match")
        if if_match is not None:
            _check_if_match(if_match, current)
        with self.store.atomic():
            self.writer.delete(table, current, caller)
        return ApiResponse.empty(204)

    def _written(
        self, root: str, request: ApiRequest, table: Table, row: Row, prefer: Prefer, status: int
    ) -> ApiResponse:
        location = entity_url(root, table, row.id)
        headers = {"OData-EntityId": location, "ETag": etag(row)}
        if not prefer.return_representation:
            return ApiResponse.empty(204, headers)
        opts = parse_options(request.query, table, self.catalog)
        body = {"@odata.context": context_url(root, table, opts.select, "/$entity")}
        body |= render(self.store, table, row, opts.select, opts.expand, prefer.annotations)
        headers["Preference-Applied"] = "return=representation"
        return ApiResponse.json(status, body, headers)

    def _service_document(self, root: str, request: ApiRequest) -> ApiResponse:
        if request.method != "GET":
            raise _not_allowed(request.method, "")
        value = [
            {"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set}
            for t in self.catalog.by_set.values()
        ]
        value.append({"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"})
        return ApiResponse.json(200, {"@odata.context": f"{root}$metadata", "value": value})

    def _who_am_i(self, root: str, request: ApiRequest) -> ApiResponse:
        if request.method != "GET":
            raise _not_allowed(request.method, "WhoAmI")
        caller = self.caller(request)
        return ApiResponse.json(
            200,
            {
                "@odata.context": f"{root}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": self.config.business_unit_id,
                "UserId": caller.user_id,
                "OrganizationId": self.config.organization_id,
            },
        )


def _check_if_match(header: str, row: Row) -> None:
    tags = [t.strip() for t in header.split(",")]
    if "*" in tags:
        return
    current = etag(row)
    if current not in tags and current.removeprefix("W/") not in tags:
        raise ApiError(412, CONCURRENCY_VERSION_MISMATCH, _VERSION_MISMATCH)


def _not_allowed(method: str, path: str) -> ApiError:
    return ApiError(
        405, "0x80060888", f"The HTTP method '{method}' is not allowed on '{path or '/'}'."
    )
