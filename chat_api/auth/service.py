"""Login and logout: checks credentials and issues or revokes tokens; no HTTP here."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bson import ObjectId

from chat_api.common.errors import Conflict, NotFound
from chat_api.config import Settings
from chat_api.realtime import presence
from chat_api.security import PasswordHasher, create_token
from chat_api.users import repository as users
from chat_api.users.models import User

# Never the identifier or the password: people type their password into the login field too.
log = logging.getLogger("chat_api.auth")


class UnknownAccount(NotFound, default="No account with this chat_id or email"):
    """No user has this chat_id or email."""


class WrongPassword(Conflict, default="Wrong password"):
    """The user exists but the password does not match."""


@dataclass(frozen=True)
class Account:
    """What a login names (None: nobody), read when the process's token-version memory was at `generation`."""

    user: User | None
    generation: int


async def find_account(identifier: str | int) -> Account:
    """The user a login names by chat_id or email, if any."""
    generation = users.token_generation()
    return Account(await users.find_by_login(identifier), generation)


async def login(account: Account, password: str, hasher: PasswordHasher, settings: Settings) -> str:
    """Check the password of the account (from find_account), mark the user online, return a signed token."""
    user = account.user
    if user is None:
        log.info("login refused: no such account")
        raise UnknownAccount
    if not await hasher.verify(password, user.password):
        log.info("login refused for user %s: wrong password", user.id)
        raise WrongPassword
    assert user.id is not None
    # Online for a while even before a socket opens (docs/api.md, "Real time", presence).
    await presence.logged_in(str(user.id))
    log.info("user %s logged in", user.id)
    # The token's first request then needs no read of the version (unless a revocation came in between).
    users.remember_token_version(str(user.id), user.token_version, account.generation)
    return create_token(str(user.id), user.token_version, settings.jwt_secret, settings.jwt_ttl)


async def logout(user_id: ObjectId) -> None:
    await users.revoke_tokens(user_id)
    # Closes the user's sockets on every worker, and tells their friends.
    await presence.logged_out(str(user_id))
    log.info("user %s logged out: earlier tokens revoked", user_id)
