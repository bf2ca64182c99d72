"""Login and logout: checks credentials and issues or revokes tokens; no HTTP here."""

from __future__ import annotations

from bson import ObjectId

from chat_api.config import Settings
from chat_api.security import PasswordHasher, create_token
from chat_api.users import service as users


class UnknownAccount(Exception):
    """No user has this chat_id or email."""


class WrongPassword(Exception):
    """The user exists but the password does not match."""


async def login(identifier: str | int, password: str, hasher: PasswordHasher, settings: Settings) -> str:
    """Check the credentials, mark the user online, and return a signed token."""
    user = await users.find_by_login(identifier)
    if user is None:
        raise UnknownAccount
    if not await hasher.verify(password, user.password):
        raise WrongPassword
    assert user.id is not None
    await users.set_flag(user.id, "online")
    return create_token(str(user.id), user.token_version, settings.jwt_secret, settings.jwt_ttl)


async def logout(user_id: ObjectId) -> None:
    await users.revoke_tokens(user_id)
