"""The organisation's enabled CRM users in one paged query (the mailbox health check's list)."""

from __future__ import annotations

from connectors.dataverse.users import enabled_users

from .fixtures import USER_A, USER_B, Emulator

USER_C = "00000000-0000-4000-8000-0000000000cc"


async def test_enabled_users_leaves_out_the_disabled_and_pages(dv: Emulator) -> None:
    await dv.seed_users()
    await dv.control(
        "POST",
        "seed",
        {
            "systemusers": [
                {"systemuserid": USER_C, "fullname": "Cy C", "isdisabled": False},
            ]
        },
    )
    before = await enabled_users(dv.client, page_size=1)  # one user a page: nextLink followed
    assert {USER_A, USER_B, USER_C} <= before
    await dv.control(
        "POST", "seed", {"systemusers": [{"systemuserid": USER_B, "isdisabled": True}]}
    )
    after = await enabled_users(dv.client)
    assert USER_B not in after and {USER_A, USER_C} <= after
