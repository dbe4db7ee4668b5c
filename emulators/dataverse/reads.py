"""GET handling: collections with paging, single rows, and change-tracking deltas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from .changetracking import (
    check_expiry,
    decode_cookie,
    decode_token,
    encode_cookie,
    encode_token,
)
from .errors import bad_request, not_found
from .messages import ApiResponse, Prefer
from .metadata import Catalog, Table
from .query import QueryOptions
from .serialize import context_url, etag, render, sort_rows
from .store import Row, Store

_SAFE = "$,()'=:!/*"


def build_link(root: str, table: Table, params: list[tuple[str, str]]) -> str:
    """An absolute collection URL with percent-encoded query options."""
    query = "&".join(f"{k}={quote(v, safe=_SAFE if k != '$deltatoken' else '')}" for k, v in params)
    return f"{root}{table.entity_set}" + (f"?{query}" if query else "")


@dataclass
class Reader:
    """Answers GETs from the store."""

    store: Store
    catalog: Catalog
    clock: Callable[[], datetime]
    default_page_size: int
    default_expiry_days: int

    def entity(
        self,
        root: str,
        table: Table,
        row_id: str,
        opts: QueryOptions,
        prefer: Prefer,
        if_none_match: str | None,
    ) -> ApiResponse:
        """``GET /set(id)``."""
        if opts.filter is not None or opts.orderby or opts.top is not None or opts.count:
            raise bad_request("Only $select and $expand apply when retrieving a single row.")
        row = self.store.get(table.logical, row_id)
        if row is None:
            raise not_found(table.logical, row_id)
        if if_none_match is not None and if_none_match.strip() in (etag(row), "*"):
            return ApiResponse.empty(304)
        body = {"@odata.context": context_url(root, table, opts.select, "/$entity")}
        body |= render(self.store, table, row, opts.select, opts.expand, prefer.annotations)
        return ApiResponse.json(200, body, {"ETag": etag(row)})

    def collection(
        self, root: str, table: Table, opts: QueryOptions, prefer: Prefer
    ) -> ApiResponse:
        """``GET /set`` with query options, paging, or change tracking."""
        if prefer.track_changes or opts.deltatoken is not None:
            return self._tracked(root, table, opts, prefer)
        rows = self.store.all(table.logical)
        if opts.filter is not None:
            predicate = opts.filter
            rows = [r for r in rows if predicate(r.values)]
        total = len(rows)
        rows = sort_rows(rows, opts.orderby)
        size = prefer.maxpagesize or self.default_page_size
        next_cookie: str | None = None
        if opts.top is not None:
            page = rows[: opts.top]
        else:
            page, next_cookie = self._page(rows, opts, size)
        body: dict[str, Any] = {"@odata.context": context_url(root, table, opts.select)}
        if opts.count:
            body["@odata.count"] = total
        body["value"] = [
            render(self.store, table, r, opts.select, opts.expand, prefer.annotations) for r in page
        ]
        if next_cookie is not None:
            params = [(k, v) for k, v in opts.raw.items() if k != "$skiptoken"]
            body["@odata.nextLink"] = build_link(
                root, table, [*params, ("$skiptoken", next_cookie)]
            )
        return ApiResponse.json(200, body, _applied(prefer))

    def _page(self, rows: list[Row], opts: QueryOptions, size: int) -> tuple[list[Row], str | None]:
        page_no = 1
        if opts.skiptoken is not None:
            page_no, attrs = decode_cookie(opts.skiptoken)
            if opts.orderby:
                start = _int_attr(attrs, "offset")
                rows = rows[start:]
            else:
                last = attrs.get("last", "")
                rows = [r for r in rows if r.id > last]
        page = rows[:size]
        if len(rows) <= size:
            return page, None
        if opts.orderby:
            offset = _int_attr(decode_cookie(opts.skiptoken)[1], "offset") if opts.skiptoken else 0
            return page, encode_cookie(page_no + 1, offset=str(offset + size))
        return page, encode_cookie(page_no + 1, last=page[-1].id)

    def _tracked(self, root: str, table: Table, opts: QueryOptions, prefer: Prefer) -> ApiResponse:
        for name, used in (
            ("$filter", opts.filter is not None),
            ("$orderby", bool(opts.orderby)),
            ("$expand", bool(opts.expand)),
            ("$top", opts.top is not None),
            ("$count", opts.count),
        ):
            if used:
                raise bad_request(
                    f"The query option {name} is not supported with change tracking "
                    "(Prefer: odata.track-changes); only $select is allowed."
                )
        size = prefer.maxpagesize or self.default_page_size
        page_no, attrs = decode_cookie(opts.skiptoken) if opts.skiptoken else (1, {})
        snapshot = _int_attr(attrs, "snapshot") if "snapshot" in attrs else self.store.version
        select_params = [("$select", opts.raw["$select"])] if "$select" in opts.raw else []
        headers = {**_applied(prefer), "Preference-Applied": _applied_list(prefer, True)}
        if opts.deltatoken is None:
            rows = self.store.all(table.logical)
            last = attrs.get("last", "")
            rows = [r for r in rows if r.id > last]
            page = rows[:size]
            body: dict[str, Any] = {"@odata.context": context_url(root, table, opts.select)}
            body["value"] = [
                render(self.store, table, r, opts.select, [], prefer.annotations) for r in page
            ]
            if len(rows) > size:
                cookie = encode_cookie(page_no + 1, last=page[-1].id, snapshot=str(snapshot))
                body["@odata.nextLink"] = build_link(
                    root, table, [*select_params, ("$skiptoken", cookie)]
                )
            else:
                body["@odata.deltaLink"] = self._delta_link(root, table, select_params, snapshot)
            return ApiResponse.json(200, body, headers)
        token = decode_token(opts.deltatoken)
        check_expiry(token, self.clock(), self._expiry_days(), self.store.expired_below)
        items = self._changes(table, token.version, snapshot)
        phase, after = attrs.get("phase", "u"), _int_attr(attrs, "after") if attrs else 0
        if opts.skiptoken:
            items = [
                it
                for it in items
                if (it[0] == phase and it[1] > after) or (phase == "u" and it[0] == "d")
            ]
        page_items = items[:size]
        body = {"@odata.context": context_url(root, table, opts.select, "/$delta")}
        values: list[dict[str, Any]] = []
        for kind, _version, payload in page_items:
            if kind == "u" and isinstance(payload, Row):
                values.append(
                    render(self.store, table, payload, opts.select, [], prefer.annotations)
                )
            else:
                values.append(
                    {
                        "@odata.context": f"{root}$metadata#{table.entity_set}/$deletedEntity",
                        "id": str(payload),
                        "reason": "deleted",
                    }
                )
        body["value"] = values
        if len(items) > size:
            kind, version, _ = page_items[-1]
            cookie = encode_cookie(
                page_no + 1, phase=kind, after=str(version), snapshot=str(snapshot)
            )
            body["@odata.nextLink"] = build_link(
                root,
                table,
                [*select_params, ("$deltatoken", opts.deltatoken), ("$skiptoken", cookie)],
            )
        else:
            body["@odata.deltaLink"] = self._delta_link(root, table, select_params, snapshot)
        return ApiResponse.json(200, body, headers)

    def _changes(self, table: Table, since: int, upto: int) -> list[tuple[str, int, Row | str]]:
        upserts: list[tuple[str, int, Row | str]] = [
            ("u", r.version, r)
            for r in self.store.rows[table.logical].values()
            if since < r.version <= upto
        ]
        deletes: list[tuple[str, int, Row | str]] = [
            ("d", t.version, t.id)
            for t in self.store.tombstones[table.logical].values()
            if since < t.version <= upto
        ]
        upserts.sort(key=lambda it: it[1])
        deletes.sort(key=lambda it: it[1])
        return upserts + deletes

    def _delta_link(
        self, root: str, table: Table, select_params: list[tuple[str, str]], snapshot: int
    ) -> str:
        token = encode_token(snapshot, self.clock())
        return build_link(root, table, [*select_params, ("$deltatoken", token)])

    def _expiry_days(self) -> int:
        for org in self.store.rows["organization"].values():
            days = org.values.get("expirechangetrackingindays")
            if isinstance(days, int):
                return days
        return self.default_expiry_days


def _int_attr(attrs: dict[str, str], name: str) -> int:
    value = attrs.get(name, "0")
    if not value.isdigit():
        raise bad_request(f"The $skiptoken attribute '{name}' is not valid.")
    return int(value)


def _applied_list(prefer: Prefer, tracking: bool = False) -> str:
    parts = []
    if prefer.maxpagesize is not None:
        parts.append(f"odata.maxpagesize={prefer.maxpagesize}")
    if prefer.annotations:
        parts.append('odata.include-annotations="*"')
    if tracking:
        parts.append("odata.track-changes")
    return ",".join(parts)


def _applied(prefer: Prefer) -> dict[str, str]:
    value = _applied_list(prefer)
    return {"Preference-Applied": value} if value else {}
