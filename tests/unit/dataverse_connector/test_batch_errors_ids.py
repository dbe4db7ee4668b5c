"""$batch bodies, error mapping and deterministic ids of the Dataverse connector (pure)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from connectors.dataverse.batch import (
    BatchOperation,
    build_batch,
    parse_batch_response,
)
from connectors.dataverse.errors import error_fields, error_for
from connectors.dataverse.ids import change_id, crm_row_id, stream_id
from connectors.dataverse.writer import etag_of
from connectors.errors import (
    AuthError,
    BadRequestError,
    CursorExpiredError,
    ForbiddenError,
    InvalidResponseError,
    NotFoundError,
    PreconditionFailedError,
    ThrottledError,
    TransientError,
)


def _err(code: str, message: str = "m") -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


class TestBuild:
    def test_one_changeset_with_content_ids_and_headers(self) -> None:
        ops = [
            BatchOperation(
                "PATCH",
                "http://h/api/data/v9.2/contacts(1)",
                "1",
                {"lastname": "A"},
                {"If-Match": "*"},
            ),
            BatchOperation("DELETE", "http://h/api/data/v9.2/tasks(2)", "2"),
        ]
        body, content_type = build_batch([ops], boundary="batch_x")
        assert content_type == "multipart/mixed; boundary=batch_x"
        text = body.decode()
        assert text.startswith("--batch_x\r\nContent-Type: multipart/mixed; boundary=changeset_")
        assert text.endswith("--batch_x--")
        assert "Content-ID: 1\r\n\r\nPATCH http://h/api/data/v9.2/contacts(1) HTTP/1.1" in text
        assert 'If-Match: *\r\n\r\n{"lastname":"A"}' in text
        assert "Content-ID: 2\r\n\r\nDELETE http://h/api/data/v9.2/tasks(2) HTTP/1.1" in text

    @pytest.mark.parametrize("n", [0, 1001])
    def test_size_limits(self, n: int) -> None:
        ops = [BatchOperation("DELETE", f"tasks({i})", str(i + 1)) for i in range(n)]
        with pytest.raises(ValueError):
            build_batch([ops])

    def test_content_ids_unique(self) -> None:
        ops = [BatchOperation("DELETE", "tasks(1)", "1"), BatchOperation("DELETE", "t(2)", "1")]
        with pytest.raises(ValueError, match="unique"):
            build_batch([ops])


REPLY = (
    "--batchresponse_1\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
    "--changesetresponse_2\r\n"
    "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
    'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: W/"12"\r\n\r\n'
    '{"versionnumber": 12}\r\n'
    "--changesetresponse_2\r\n"
    "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n"
    "HTTP/1.1 204 No Content\r\n\r\n\r\n"
    "--changesetresponse_2--\r\n"
    "--batchresponse_1--\r\n"
)


class TestParse:
    def test_changeset_reply_flattened(self) -> None:
        parts = parse_batch_response(REPLY.encode(), "multipart/mixed; boundary=batchresponse_1")
        assert [(p.status, p.content_id) for p in parts] == [(200, "1"), (204, "2")]
        assert parts[0].json() == {"versionnumber": 12}
        assert parts[0].headers["etag"] == 'W/"12"'
        assert parts[1].body == b""

    def test_failed_changeset_is_one_error_part(self) -> None:
        reply = (
            "--b\r\nContent-Type: application/http\r\nContent-ID: 3\r\n\r\n"
            "HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n"
            + _err("0x80060882").decode()
            + "\r\n--b--\r\n"
        )
        (part,) = parse_batch_response(reply.encode(), 'multipart/mixed; boundary="b"')
        assert part.status == 412 and part.content_id == "3"
        assert error_fields(part.body) == ("0x80060882", "m")

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"{}", "application/json"),
            (b"--b\r\n", "multipart/mixed"),
            (b"garbage", "multipart/mixed; boundary=b"),
            (b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--", "multipart/mixed; boundary=b"),
            (
                b"--b\r\nContent-Type: application/http\r\n\r\nNOT HTTP\r\n--b--",
                "multipart/mixed; boundary=b",
            ),
            (
                b"--b\r\nContent-Type: application/http\r\nno colon here\r\n\r\n--b--",
                "multipart/mixed; boundary=b",
            ),
            (b"--b--", "multipart/mixed; boundary=b"),
        ],
    )
    def test_garbage_is_an_invalid_response(self, body: bytes, content_type: str) -> None:
        with pytest.raises(InvalidResponseError):
            parse_batch_response(body, content_type)

    def test_garbage_part_body_is_an_invalid_response(self) -> None:
        reply = "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n[1,2]\r\n--b--"
        (part,) = parse_batch_response(reply.encode(), "multipart/mixed; boundary=b")
        with pytest.raises(InvalidResponseError, match="not a JSON object"):
            part.json()


class TestErrorMapping:
    @pytest.mark.parametrize(
        ("status", "body", "kind"),
        [
            (400, _err("0x80060888"), BadRequestError),
            (400, _err("0x80044352"), CursorExpiredError),
            (401, b"", AuthError),
            (403, _err("0x80040220"), ForbiddenError),
            (404, _err("0x80040217"), NotFoundError),
            (412, _err("0x80060882"), PreconditionFailedError),
            (500, b"<html>", TransientError),
            (502, b"", TransientError),
            (503, b"", TransientError),
            (302, b"", InvalidResponseError),
        ],
    )
    def test_status_to_class(self, status: int, body: bytes, kind: type[Exception]) -> None:
        err = error_for(status, {}, body, "GET contacts")
        assert type(err) is kind
        assert err.status == status
        assert f"HTTP {status}" in str(err)

    def test_429_honours_retry_after_and_is_retriable(self) -> None:
        err = error_for(429, {"retry-after": "7"}, _err("0x80072322"), "x")
        assert isinstance(err, ThrottledError) and err.retry_after == 7.0 and err.retriable
        assert err.code == "0x80072322"
        bare = error_for(429, {}, b"nonsense", "x")
        assert isinstance(bare, ThrottledError) and bare.retry_after > 0

    @pytest.mark.parametrize("status", [503, 504])
    def test_503_504_retry_after_only_for_safe_requests(self, status: int) -> None:
        safe = error_for(status, {"Retry-After": "3"}, b"", "x", safe=True)
        unsafe = error_for(status, {"Retry-After": "3"}, b"", "x", safe=False)
        assert isinstance(safe, ThrottledError) and safe.retry_after == 3.0
        assert type(unsafe) is TransientError

    @pytest.mark.parametrize(
        "body", [b"", b"not json", b"[]", b'{"error": "x"}', b'{"error": {"code": 5}}']
    )
    def test_garbage_error_bodies_still_map(self, body: bytes) -> None:
        err = error_for(403, {}, body, "PATCH contacts")
        assert isinstance(err, ForbiddenError) and err.code is None
        assert "no readable error body" in str(err)


class TestIds:
    def test_row_id_is_deterministic_and_scoped(self) -> None:
        a = crm_row_id("org", "corr-1", "contact")
        assert a == crm_row_id("org", "corr-1", "contact")
        assert uuid.UUID(a).version == 5
        assert len({a, crm_row_id("org2", "corr-1", "contact")}) == 2
        assert len({a, crm_row_id("org", "corr-2", "contact")}) == 2
        assert len({a, crm_row_id("org", "corr-1", "task")}) == 2
        with pytest.raises(ValueError):
            crm_row_id("", "c", "task")

    def test_change_and_stream_ids(self) -> None:
        assert change_id("task", "abc", "17") == "crm:task:abc:17"
        assert change_id("task", "abc", None) == "crm:task:abc:deleted"
        assert stream_id("o", "email") == "crm:o:email"

    def test_etag_of(self) -> None:
        assert etag_of("12") == 'W/"12"'
        assert etag_of('W/"12"') == 'W/"12"'
        assert etag_of("*") == "*"
