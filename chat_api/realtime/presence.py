"""Presence: `User.flag` follows presence records (one per socket, one per login) and the heartbeats of the
processes holding the sockets; friends hear of each change.

Every query of the `presence` and `processes` collections is here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from chat_api.blocks import repository as blocks
from chat_api.common.clock import utc_now
from chat_api.events.service import publish, signal
from chat_api.friends import repository as friends
from chat_api.realtime.models import (
    REAPER_LEASE,
    PresenceRecord,
    ProcessHeartbeat,
    heartbeat_fields,
    lease_fields,
    login_record,
    socket_record,
)
from chat_api.store.client import BACKGROUND
from chat_api.users import repository as users
from chat_api.users.models import Flag

log = logging.getLogger("chat_api.presence")

# Each process writes its heartbeat every HEARTBEAT_INTERVAL, valid for HEARTBEAT_TTL (two beats may be lost
# to a slow store). Its sockets' records carry no expiry of their own: one write per process per interval,
# whatever the number of sockets.
HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_TTL = 30.0
# Clocks of processes differ: a heartbeat counts as dead only this long after the expiry its writer set, so
# a reaper whose clock runs up to SKEW_MARGIN ahead never takes a live process's users offline. (The store's
# own clock is not an option on both stores: nx-27017 takes `$currentDate` but neither `$$NOW` nor `$expr`.)
SKEW_MARGIN = 15.0
# Every process tries for the reaper's lease every REAP_INTERVAL: one command when another holds it. The
# holder renews it for LEASE_TTL (a missed renewal does not lose it); it is free SKEW_MARGIN after that.
REAP_INTERVAL = 20.0
LEASE_TTL = 2 * REAP_INTERVAL
# A crashed process's users go offline at most this long after its last heartbeat (a few seconds before the
# crash): dead after HEARTBEAT_TTL + SKEW_MARGIN, reaped at the leader's next round. If the crashed process
# held the lease, its lease is free at most LEASE_TTL + SKEW_MARGIN after the crash, taken at the next try.
CRASH_BOUND = max(HEARTBEAT_TTL, LEASE_TTL) + SKEW_MARGIN + REAP_INTERVAL
# A login counts as presence for this long, so a client has time to open its socket; a client
# that never does (REST only) goes offline after it.
LOGIN_TTL = 60.0
REAP_BATCH = 200
# A closed socket's record is settled by its process; while the store is down, tried again for a few minutes.
SETTLE_ATTEMPTS = 30
SETTLE_RETRY_AFTER = 5.0

# The process ids (of this interpreter) that held the lease at their last try: they renew it first, the others
# try to take it first, so either costs one command when nothing changed.
_leading: set[str] = set()
# Settle tasks waiting for a grace period to pass: asyncio keeps only weak references to tasks.
_settling: set[asyncio.Task[None]] = set()


async def _flip(user_id: str, flag: Flag) -> bool:
    """Set the flag if it differs; only the writer that changed it tells the friends."""
    if not await users.flip_flag(user_id, flag):
        return False
    await _tell_friends(user_id, flag)
    log.debug("user %s is %s", user_id, flag)
    return True


async def _tell_friends(user_id: str, flag: Flag, friend_ids: list[str] | None = None) -> None:
    """The `presence` signal to the user's friends (`friend_ids` when the friendships are already gone), but
    those who block the user (docs/decisions.md, "Blocks"). The blockers are read only when there are friends to
    tell: a user without friends costs what it did before blocks (login 4 data commands, bench scenario 7)."""
    if friend_ids is None:
        friend_ids = await friends.friend_ids(user_id)
    if not friend_ids:
        return  # nobody to tell: no signal at all
    blockers = await blocks.blockers_of(user_id)
    told = [friend_id for friend_id in friend_ids if friend_id not in blockers]
    if told:  # else every friend blocks the user
        await signal("presence", {"user_id": user_id, "flag": flag}, to=told)


async def hold(record_id: str, user_id: str, process_id: str) -> None:
    """A socket opened on `process_id`: its record keeps the user online while that process heartbeats."""
    await PresenceRecord.get_pymongo_collection().update_one(
        {"_id": record_id}, {"$set": socket_record(user_id, process_id)}, upsert=True
    )
    await _flip(user_id, "online")


async def logged_in(user_id: str) -> None:
    """A login keeps the user online for LOGIN_TTL, socket or not."""
    expires_at = utc_now() + timedelta(seconds=LOGIN_TTL)
    await PresenceRecord.get_pymongo_collection().update_one(
        {"_id": f"login:{user_id}"}, {"$set": login_record(user_id, expires_at)}, upsert=True
    )
    await _flip(user_id, "online")


async def release(record_id: str, user_id: str, grace: float) -> None:
    """A socket closed: its record expires after the grace period, when this process settles it (the
    reaper does, if this process is gone by then)."""
    # First, so the record goes after the grace period even if this write fails.
    _spawn(_settle(record_id, user_id, grace))
    await PresenceRecord.get_pymongo_collection().update_one(
        {"_id": record_id}, {"$set": {"expires_at": utc_now() + timedelta(seconds=grace)}}
    )


def stop_settling() -> None:
    """The process is stopping: the records of its closed sockets are left to the reaper, which deletes them once
    expired (the clients reconnect elsewhere meanwhile, so nobody blinks offline)."""
    for task in list(_settling):
        task.cancel()


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(_in_background(coroutine), name="presence-settle")
    _settling.add(task)
    task.add_done_callback(_settling.discard)


async def _in_background(coroutine: Coroutine[Any, Any, None]) -> None:
    # Spawned by a socket's handler, but no request's: command counts leave its commands out.
    BACKGROUND.set(True)
    await coroutine


async def _settle(record_id: str, user_id: str, grace: float) -> None:
    """After the grace period: drop the closed socket's record and take the user offline if nothing else
    holds them. A timer of the closing process, not a poll: the offline notice comes as the grace ends.

    Retried while the store is down: an open socket's record has no expiry, so one left behind would keep
    its user online for as long as this process lives.
    """
    await asyncio.sleep(grace)
    deleted = False
    for _ in range(SETTLE_ATTEMPTS):
        try:
            if not deleted:
                # The record is this socket's alone (its id is unique): gone means logout or the reaper took it.
                deleted = (
                    await PresenceRecord.get_pymongo_collection().delete_one({"_id": record_id})
                ).deleted_count == 1
                if not deleted:
                    return
            await _take_offline({user_id}, utc_now())
            return
        except PyMongoError as error:
            log.warning("could not settle the presence of user %s, retrying: %s", user_id, error)
            await asyncio.sleep(SETTLE_RETRY_AFTER)
    log.error("gave up settling the presence of user %s (record %s)", user_id, record_id)


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
    await _tell_friends(user_id, "offline", friend_ids)


async def heartbeat(process_id: str, now: datetime | None = None) -> None:
    """This process is alive, and so are its sockets' records: one write, every HEARTBEAT_INTERVAL."""
    expires_at = (now or utc_now()) + timedelta(seconds=HEARTBEAT_TTL)
    await ProcessHeartbeat.get_pymongo_collection().update_one(
        {"_id": process_id}, {"$set": heartbeat_fields(expires_at)}, upsert=True
    )


async def _lead(process_id: str, now: datetime) -> bool:
    """Hold the reaper's lease: renew it if ours, else take it if free (never held, or lapsed more than the
    skew margin ago). Without `$or` beside `_id` (docs/store.md): the filter that fits our last role first."""
    leases = ProcessHeartbeat.get_pymongo_collection()
    until = now + timedelta(seconds=LEASE_TTL)
    if process_id in _leading:
        renewed = await leases.update_one(
            {"_id": REAPER_LEASE, "holder": {"$eq": process_id}}, {"$set": {"until": until}}
        )
        if renewed.matched_count == 1:
            return True
        _leading.discard(process_id)
    try:
        # Matches a lapsed lease; when the lease is held, the upsert's insert clashes on `_id`.
        await leases.update_one(
            {"_id": REAPER_LEASE, "until": {"$lt": now - timedelta(seconds=SKEW_MARGIN)}},
            {"$set": lease_fields(process_id, until)},
            upsert=True,
        )
    except DuplicateKeyError:
        return False
    _leading.add(process_id)
    log.info("process %s reaps presence from now on", process_id)
    return True


async def reap(process_id: str, now: datetime | None = None) -> int:
    """If `process_id` holds the reaper's lease: delete the records of dead processes and the expired ones,
    and take offline the users left without a live record; returns how many went offline.

    Called by every process every REAP_INTERVAL; only the lease holder reaps (one command for the others).
    Should two ever reap at once (a lease taken over), the conditional deletes and flag flips still give each
    record and each transition one winner.
    """
    now = now or utc_now()
    if not await _lead(process_id, now):
        return 0
    records = PresenceRecord.get_pymongo_collection()
    processes = ProcessHeartbeat.get_pymongo_collection()
    candidates: set[str] = set()
    dead_before = now - timedelta(seconds=SKEW_MARGIN)
    dead = await processes.find({"expires_at": {"$lt": dead_before}}, {"_id": 1}).limit(REAP_BATCH).to_list()
    for doc in dead:
        # One process at a time, by `{"$eq": …}`: `process_1` serves it on both stores (nx-27017 scans for `$in`).
        process = doc["_id"]
        orphans = await records.find({"process": {"$eq": process}}, {"user_id": 1}).to_list()
        candidates.update(orphan["user_id"] for orphan in orphans)
        await records.delete_many({"process": {"$eq": process}})
        # A process that beat meanwhile (it was only slow) keeps its heartbeat.
        await processes.delete_one({"_id": process, "expires_at": {"$lt": dead_before}})
        log.warning("process %s stopped beating: %s presence records of its deleted", process, len(orphans))
    expired = await records.find({"expires_at": {"$lt": now}}, {"user_id": 1}).limit(REAP_BATCH).to_list()
    for doc in expired:
        result = await records.delete_one({"_id": doc["_id"], "expires_at": {"$lt": now}})
        if result.deleted_count == 1:  # else its process settled it meanwhile
            candidates.add(doc["user_id"])
    if not candidates:
        return 0
    return await _take_offline(candidates, now)


async def _take_offline(user_ids: set[str], now: datetime) -> int:
    """Take offline those of `user_ids` left with no live record; returns how many went offline."""
    offline = 0
    for user_id in sorted(user_ids):
        # One user at a time: `user_id_1` serves `{"$eq": …}` on both stores (nx-27017 scans for `$in`).
        if await _has_live_record(user_id, now):
            continue
        if await _flip(user_id, "offline"):
            offline += 1
            # A socket that opened between the look and the flip found the user online and left
            # the flag alone: look again, and put it back.
            if await _has_live_record(user_id, utc_now()):
                await _flip(user_id, "online")
    return offline


async def _has_live_record(user_id: str, now: datetime) -> bool:
    doc = await PresenceRecord.get_pymongo_collection().find_one(
        {"user_id": {"$eq": user_id}, "expires_at": {"$gte": now}}, {"_id": 1}
    )
    return doc is not None
