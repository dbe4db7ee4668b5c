"""Open extensions on To Do tasks, and DELETE of a message moving it to Deleted Items."""

from __future__ import annotations

from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.message import Message
from msgraph.generated.models.open_type_extension import OpenTypeExtension
from msgraph.generated.models.todo_task import TodoTask
from msgraph.generated.users.item.todo.lists.item.tasks.item.todo_task_item_request_builder import (
    TodoTaskItemRequestBuilder,
)

from .conftest import Graph

EXT = "com.dynasync.task"


async def _default_list(graph: Graph, user: str) -> str:
    lists = await graph.sdk.users.by_user_id(user).todo.lists.get()
    assert lists is not None and lists.value and lists.value[0].id
    return lists.value[0].id


async def test_task_created_with_inline_extension_expands_it(graph: Graph) -> None:
    user = await graph.user("alice")
    list_id = await _default_list(graph, user)
    tasks = graph.sdk.users.by_user_id(user).todo.lists.by_todo_task_list_id(list_id).tasks
    ext = OpenTypeExtension(
        extension_name=EXT, additional_data={"percentComplete": 40, "regarding": "account:a1"}
    )
    task = await tasks.post(TodoTask(title="Follow up", extensions=[ext]))
    assert task is not None and task.id
    assert [e.id for e in task.extensions or []] == [EXT]
    config: RequestConfiguration[Any] = RequestConfiguration(
        query_parameters=TodoTaskItemRequestBuilder.TodoTaskItemRequestBuilderGetQueryParameters(
            expand=[f"extensions($filter=id eq '{EXT}')"]
        )
    )
    read = await tasks.by_todo_task_id(task.id).get(config)
    assert read is not None and read.extensions
    got = read.extensions[0]
    assert isinstance(got, OpenTypeExtension) and got.extension_name == EXT
    assert got.additional_data["percentComplete"] == 40
    assert got.additional_data["regarding"] == "account:a1"
    config.query_parameters = (
        TodoTaskItemRequestBuilder.TodoTaskItemRequestBuilderGetQueryParameters(
            expand=["extensions($filter=id eq 'com.other')"]
        )
    )
    other = await tasks.by_todo_task_id(task.id).get(config)
    assert other is not None and other.extensions == []


async def test_extension_endpoint_create_merge_update_delete(graph: Graph) -> None:
    user = await graph.user("bob")
    list_id = await _default_list(graph, user)
    base = f"{graph.api}/users/{user}/todo/lists/{list_id}/tasks"
    made = await graph.raw.post(base, json={"title": "t"})
    task = made.json()
    url = f"{base}/{task['id']}/extensions"
    body = {"@odata.type": "microsoft.graph.openTypeExtension", "extensionName": EXT, "a": 1}
    created = await graph.raw.post(url, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == EXT and created.json()["a"] == 1
    again = await graph.raw.post(url, json=body)
    assert again.status_code == 409
    after = (await graph.raw.get(f"{base}/{task['id']}")).json()
    assert after["@odata.etag"] != task["@odata.etag"], "writing an extension changes the task"
    patched = await graph.raw.patch(f"{url}/{EXT}", json={"b": "x", "a": 2})
    assert patched.status_code == 200 and patched.json()["a"] == 2 and patched.json()["b"] == "x"
    listed = (await graph.raw.get(url)).json()["value"]
    assert listed == [
        {
            "@odata.type": "#microsoft.graph.openTypeExtension",
            "id": EXT,
            "extensionName": EXT,
            "a": 2,
            "b": "x",
        }
    ]
    assert (await graph.raw.delete(f"{url}/{EXT}")).status_code == 204
    assert (await graph.raw.get(f"{url}/{EXT}")).status_code == 404
    # extensions are not PATCHed inline on the task
    inline = await graph.raw.patch(f"{base}/{task['id']}", json={"extensions": [body]})
    assert inline.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"a": 1},
        {"extensionName": ""},
        {"extensionName": EXT, "@odata.type": "microsoft.graph.user"},
        {"extensionName": EXT, "nested": {"x": 1}},
        {"extensionName": EXT, "mixed": [1, {"x": 2}]},
        [1, 2],
    ],
)
async def test_bad_extension_bodies_are_400(graph: Graph, body: Any) -> None:
    user = await graph.user("carol")
    list_id = await _default_list(graph, user)
    base = f"{graph.api}/users/{user}/todo/lists/{list_id}/tasks"
    task = (await graph.raw.post(base, json={"title": "t"})).json()
    direct = await graph.raw.post(f"{base}/{task['id']}/extensions", json=body)
    assert direct.status_code == 400, direct.text
    assert direct.json()["error"]["code"] == "RequestBodyRead"
    inline = await graph.raw.post(base, json={"title": "t2", "extensions": [body]})
    assert inline.status_code == 400, inline.text


async def test_delete_moves_message_to_deleted_items_then_removes_it(graph: Graph) -> None:
    user = await graph.user("dave")
    me = graph.sdk.users.by_user_id(user)
    inbox = me.mail_folders.by_mail_folder_id("inbox")
    first = await inbox.messages.delta.get()
    assert first is not None and first.odata_delta_link
    made = await inbox.messages.post(Message(subject="bye"))
    assert made is not None and made.id
    mid = await inbox.messages.delta.with_url(first.odata_delta_link).get()
    assert mid is not None and mid.odata_delta_link
    assert [m.id for m in mid.value or []] == [made.id]
    await me.messages.by_message_id(made.id).delete()
    moved = await me.messages.by_message_id(made.id).get()
    trash = await me.mail_folders.by_mail_folder_id("deleteditems").get()
    assert moved is not None and trash is not None and moved.parent_folder_id == trash.id
    after = await inbox.messages.delta.with_url(mid.odata_delta_link).get()
    assert after is not None and len(after.value or []) == 1
    removal = (after.value or [])[0]
    assert removal.id == made.id
    assert (removal.additional_data or {}).get("@removed") == {"reason": "deleted"}
    # deleting from Deleted Items removes it for good
    await me.messages.by_message_id(made.id).delete()
    gone = await graph.raw.get(f"{graph.api}/users/{user}/messages/{made.id}")
    assert gone.status_code == 404


async def test_permanent_delete(graph: Graph) -> None:
    user = await graph.user("erin")
    me = graph.sdk.users.by_user_id(user)
    made = await me.messages.post(Message(subject="x"))
    assert made is not None and made.id
    url = f"{graph.api}/users/{user}/messages/{made.id}/permanentDelete"
    bad = await graph.raw.post(url, content=b"{garbage")
    assert bad.status_code == 400
    assert (await graph.raw.post(url)).status_code == 204
    assert (await graph.raw.get(f"{graph.api}/users/{user}/messages/{made.id}")).status_code == 404
