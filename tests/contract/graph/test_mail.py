"""Users, folders, messages, move, sendMail and extended properties through the real SDK."""

from __future__ import annotations

import httpx
import pytest
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.importance import Importance
from msgraph.generated.models.internet_message_header import InternetMessageHeader
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.mail_folder import MailFolder
from msgraph.generated.models.message import Message
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.single_value_legacy_extended_property import (
    SingleValueLegacyExtendedProperty,
)
from msgraph.generated.users.item.messages.item.move.move_post_request_body import (
    MovePostRequestBody,
)
from msgraph.generated.users.item.messages.messages_request_builder import (
    MessagesRequestBuilder,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import (
    SendMailPostRequestBody,
)

from .conftest import Graph

PROP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name DynasyncCorrelation"


def _to(address: str) -> Recipient:
    return Recipient(email_address=EmailAddress(address=address))


async def test_user_by_id_and_upn(graph: Graph) -> None:
    uid = await graph.user("alice")
    by_upn = await graph.sdk.users.by_user_id("alice@contoso.test").get()
    by_id = await graph.sdk.users.by_user_id(uid).get()
    assert by_upn is not None and by_id is not None
    assert by_upn.id == by_id.id == uid and by_id.mail == "alice@contoso.test"
    with pytest.raises(APIError) as err:
        await graph.sdk.users.by_user_id("nobody@contoso.test").get()
    assert err.value.response_status_code == 404


async def test_missing_or_bad_token_is_401(graph: Graph) -> None:
    await graph.user("alice")
    async with httpx.AsyncClient() as anonymous:
        replies = [
            await anonymous.get(f"{graph.api}/users/alice@contoso.test", headers=headers)
            for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"})
        ]
    for reply in replies:
        assert reply.status_code == 401
        error = reply.json()["error"]
        assert error["code"] == "InvalidAuthenticationToken"
        assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])


async def test_folders_messages_move_and_delete(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    inbox = await me.mail_folders.by_mail_folder_id("inbox").get()
    assert inbox is not None and inbox.display_name == "Inbox"
    child = await me.mail_folders.by_mail_folder_id("inbox").child_folders.post(
        MailFolder(display_name="Projects")
    )
    assert child is not None and child.parent_folder_id == inbox.id
    draft = await me.messages.post(
        Message(
            subject="Quarterly",
            body=ItemBody(content_type=BodyType.Html, content="<p>hi</p>"),
            to_recipients=[_to("bob@contoso.test")],
            categories=["Tracked to Dynamics 365"],
            importance=Importance.High,
            single_value_extended_properties=[
                SingleValueLegacyExtendedProperty(id=PROP, value="corr-1")
            ],
        )
    )
    assert draft is not None and draft.id and draft.change_key and draft.internet_message_id
    assert draft.is_draft is True and draft.categories == ["Tracked to Dynamics 365"]
    moved = await me.messages.by_message_id(draft.id).move.post(
        MovePostRequestBody(destination_id=child.id)
    )
    # no Prefer: IdType="ImmutableId": the moved message answers to a new id
    assert moved is not None and moved.id and moved.id != draft.id
    assert moved.parent_folder_id == child.id
    in_child = await me.mail_folders.by_mail_folder_id(child.id or "").messages.get()
    assert in_child is not None and [m.id for m in in_child.value or []] == [moved.id]
    updated = await me.messages.by_message_id(moved.id).patch(Message(is_read=True))
    assert updated is not None and updated.is_read and updated.change_key != draft.change_key
    await me.messages.by_message_id(moved.id).delete()  # to Deleted Items, under a new id
    with pytest.raises(APIError) as err:
        await me.messages.by_message_id(moved.id).get()
    assert err.value.response_status_code == 404
    trash = await me.mail_folders.by_mail_folder_id("deleteditems").messages.get()
    assert trash is not None and [m.subject for m in trash.value or []] == ["Quarterly"]
    trashed = (trash.value or [])[0].id or ""
    await me.messages.by_message_id(trashed).delete()  # and gone
    with pytest.raises(APIError) as err:
        await me.messages.by_message_id(trashed).get()
    assert err.value.response_status_code == 404


async def test_extended_property_expand_and_filter(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    for value in ("corr-1", "corr-2"):
        await me.messages.post(
            Message(
                subject=value,
                single_value_extended_properties=[
                    SingleValueLegacyExtendedProperty(id=PROP, value=value)
                ],
            )
        )
    params = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        filter=f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP}' and ep/value eq 'corr-2')",
        expand=[f"singleValueExtendedProperties($filter=id eq '{PROP}')"],
        select=["subject"],
    )
    found = await me.messages.get(RequestConfiguration(query_parameters=params))
    assert found is not None and len(found.value or []) == 1
    message = (found.value or [])[0]
    assert message.subject == "corr-2" and message.body is None
    props = message.single_value_extended_properties or []
    assert [(p.id, p.value) for p in props] == [(PROP, "corr-2")]


async def test_send_mail_reaches_sent_items_and_recipient_inbox(graph: Graph) -> None:
    await graph.user("alice")
    await graph.user("bob")
    alice = graph.sdk.users.by_user_id("alice@contoso.test")
    await alice.send_mail.post(
        SendMailPostRequestBody(
            message=Message(
                subject="Offer",
                body=ItemBody(content_type=BodyType.Text, content="see attached"),
                to_recipients=[_to("bob@contoso.test")],
                bcc_recipients=[_to("carol@elsewhere.test")],
                internet_message_headers=[
                    InternetMessageHeader(name="In-Reply-To", value="<orig@crm.test>")
                ],
            ),
            save_to_sent_items=True,
        )
    )
    sent = await alice.mail_folders.by_mail_folder_id("sentitems").messages.get()
    inbox = (
        await graph.sdk.users.by_user_id("bob@contoso.test")
        .mail_folders.by_mail_folder_id("inbox")
        .messages.get()
    )
    assert sent is not None and inbox is not None
    (copy,) = sent.value or []
    (received,) = inbox.value or []
    assert copy.internet_message_id == received.internet_message_id
    assert copy.conversation_id == received.conversation_id
    assert received.from_ and received.from_.email_address
    assert received.from_.email_address.address == "alice@contoso.test"
    assert received.is_read is False and copy.is_draft is False
    assert received.bcc_recipients == []


async def test_send_mail_without_recipients_is_400(graph: Graph) -> None:
    await graph.user("alice")
    with pytest.raises(APIError) as err:
        await graph.sdk.users.by_user_id("alice@contoso.test").send_mail.post(
            SendMailPostRequestBody(message=Message(subject="x"))
        )
    assert err.value.response_status_code == 400
