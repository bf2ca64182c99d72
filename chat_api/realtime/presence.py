"""Presence: `User.flag` follows expiring records (one per socket, one per login); friends hear of each change.

Every query of the `presence` collection is here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from chat_api.common.clock import utc_now
from chat_api.events.service import publish, signal
from chat_api.friends import repository as friends
from chat_api.realtime.models import PresenceRecord
from chat_api.users import repository as users
from chat_api.users.models import Flag

log = logging.getLogger("chat_api.presence")

# A socket's record lives this long unless its worker refreshes it (every RECORD_REFRESH): a
# crashed worker's users go offline within RECORD_TTL plus the reaper's period.
RECORD_TTL = 30.0
RECORD_REFRESH = 10.0
# A login counts as presence for this long, so a client has time to open its socket; a client
# that never does (REST only) goes offline after it.
LOGIN_TTL = 60.0
REAP_BATCH = 200


async def _flip(user_id: str, flag: Flag) -> bool:
    """Set the flag if it differs; only the writer that changed it tells the friends."""
    if not await users.flip_flag(user_id, flag):
        return False
    await _tell_friends(user_id, flag)
    log.debug("user %s is %s", user_id, flag)
    return True


async def _tell_friends(user_id: str, flag: Flag) -> None:
    friend_ids = await friends.friend_ids(user_id)
    if friend_ids:  # nobody to tell: no event at all
        await signal("presence", {"user_id": user_id, "flag": flag}, to=friend_ids)


async def hold(record_id: str, user_id: str, worker: str, seconds: float) -> None:
    """Keep a user online through `record_id` for `seconds` (refreshed or not), and mark them online."""
    await PresenceRecord.get_pymongo_collection().update_one(
        {"_id": record_id},
        {"$set": {"user_id": user_id, "worker": worker, "expires_at": utc_now() + timedelta(seconds=seconds)}},
        upsert=True,
    )
    await _flip(user_id, "online")


async def logged_in(user_id: str) -> None:
    await hold(f"login:{user_id}", user_id, "login", LOGIN_TTL)


async def release(record_id: str, grace: float) -> None:
    """A socket closed: its record expires after the grace period, and the reaper decides then."""
    await PresenceRecord.get_pymongo_collection().update_one(
        {"_id": record_id}, {"$set": {"expires_at": utc_now() + timedelta(seconds=grace)}}
    )


async def refresh(records: AsyncCollection[dict[str, Any]], record_ids: list[str]) -> None:
    """Push back the expiry of the records of this worker's open sockets."""
    if not record_ids:
        return
    expires_at = utc_now() + timedelta(seconds=RECORD_TTL)
    # `$in` on `_id` is served by the primary key on both stores.
    await records.update_many({"_id": {"$in": record_ids}}, {"$set": {"expires_at": expires_at}})


async def logged_out(user_id: str) -> None:
    """After the tokens were revoked: drop every record, close the user's sockets everywhere, tell friends."""
    await PresenceRecord.get_pymongo_collection().delete_many({"user_id": {"$eq": user_id}})
    version = await users.token_version(user_id)
    # Every worker closes this user's sockets authenticated with an older token version.
    await publish("logout", [user_id], {"token_version": version}, transient=True)
    # revoke_tokens already set the flag offline; a valid token means they were (almost surely) online.
    await _tell_friends(user_id, "offline")


# Above every token version an account can reach: the `logout` event of a deleted account closes all its sockets.
EVERY_TOKEN_VERSION = 2**62


async def account_deleted(user_id: str, friend_ids: list[str]) -> None:
    """After the user document is gone: drop every record, close the account's sockets on every worker (4401),
    and tell its friends (`friend_ids`) it is offline."""
    await PresenceRecord.get_pymongo_collection().delete_many({"user_id": {"$eq": user_id}})
    await publish("logout", [user_id], {"token_version": EVERY_TOKEN_VERSION}, transient=True)
    if friend_ids:
        await signal("presence", {"user_id": user_id, "flag": "offline"}, to=friend_ids)


async def _has_live_record(user_id: str, now: datetime) -> bool:
    doc = await PresenceRecord.get_pymongo_collection().find_one(
        {"user_id": {"$eq": user_id}, "expires_at": {"$gte": now}}, {"_id": 1}
    )
    return doc is not None


async def reap_records(records: Any = None, now: datetime | None = None) -> int:
    """Delete expired records and take offline the users left without one; returns how many went offline.

    Every worker runs this: the conditional delete gives each record one winner, and the
    conditional flag update gives each transition one publisher.
    """
    now = now or utc_now()
    collection = records if records is not None else PresenceRecord.get_pymongo_collection()
    expired = await collection.find({"expires_at": {"$lt": now}}, {"user_id": 1}).limit(REAP_BATCH).to_list()
    offline = 0
    for doc in expired:
        result = await collection.delete_one({"_id": doc["_id"], "expires_at": {"$lt": now}})
        if result.deleted_count != 1:
            continue  # another worker reaped it, or its socket refreshed it meanwhile
        user_id = doc["user_id"]
        if await _has_live_record(user_id, now):
            continue
        if await _flip(user_id, "offline"):
            offline += 1
            # A socket that opened between the look and the flip found the user online and left
            # the flag alone: look again, and put it back.
            if await _has_live_record(user_id, utc_now()):
                await _flip(user_id, "online")
    return offline


HEARTBEAT_INTERVAL = RECORD_REFRESH
REAP_INTERVAL = 0.5


async def heartbeat(process_id: str) -> None:  # placeholder until per-process presence lands
    return None


async def reap(process_id: str) -> int:  # placeholder until per-process presence lands
    return await reap_records()
