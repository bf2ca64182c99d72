"""Blocking and unblocking, and my blocks; no HTTP. The rules a block imposes are kept by the packages that
check it (messages, friends, groups, realtime), through `blocks.repository`: this package imports none of them."""

from __future__ import annotations

from chat_api.blocks import repository
from chat_api.blocks.models import new_block_doc
from chat_api.blocks.schemas import BlockedUser
from chat_api.common.clock import stored_datetime, utc_now
from chat_api.common.errors import Invalid, UserNotFound
from chat_api.common.ids import canonical_id
from chat_api.users import repository as users


def _other(me: str, user_id: str) -> str:
    """The user named in the path: UserNotFound if malformed, Invalid if it is me."""
    canonical = canonical_id(user_id)
    if canonical is None:
        raise UserNotFound
    if canonical == me:
        raise Invalid("You cannot block or unblock yourself")
    return canonical


async def block(me: str, user_id: str) -> None:
    """Block a user (a second time: nothing changes). Friendships, groups and messages stay as they are."""
    other = _other(me, user_id)
    if not await users.user_exists(other):
        raise UserNotFound
    await repository.insert(new_block_doc(me, other, utc_now()))


async def unblock(me: str, user_id: str) -> None:
    """Lift a block (none: nothing changes, for a user who exists)."""
    other = _other(me, user_id)
    # The user is looked up only when there was nothing to delete: a block names a user who exists
    # (an account deletion removes the blocks of it).
    if not await repository.delete(me, other) and not await users.user_exists(other):
        raise UserNotFound


async def blocked_users(me: str, limit: int, offset: int) -> tuple[list[BlockedUser], int]:
    """My blocked users' public profiles, in the order I blocked them, and how many in all."""
    docs, total = await repository.page(me, limit, offset)
    profiles = await users.public_users(doc["blocked_id"] for doc in docs)
    page = []
    for doc in docs:
        profile = profiles.get(doc["blocked_id"])
        if profile is not None:  # an account deleted while its deletion removes the blocks of it
            page.append(BlockedUser(**profile.model_dump(), blocked_at=stored_datetime(doc["created_at"])))
    return page, total
