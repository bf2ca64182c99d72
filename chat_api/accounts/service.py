"""Deleting an account completely, even when the process dies halfway: the mark, each package's clean-up, the sweeper.

The deletion is written down first (`account_deletions`), then carried out step by step, and the mark removed
last. Every step can run again (each deletes or sets what is still there), so a deletion cut short is finished by
running it again from the start: by the sweeper, which every worker runs at start-up and every SWEEP_INTERVAL,
once the lease of whoever was carrying it out has run out (docs/reliability.md, "Account deletion").
"""

from __future__ import annotations

import logging

from bson import ObjectId

from chat_api.blocks import repository as blocks
from chat_api.common.clock import epoch_ms, utc_now
from chat_api.files.service import delete_files_of
from chat_api.friends import repository as friends
from chat_api.groups import service as groups
from chat_api.messages import postings
from chat_api.messages.models import erased_summary
from chat_api.messages.repository import direct_messages
from chat_api.realtime import presence
from chat_api.users import repository as users
from chat_api.users import service as user_service

log = logging.getLogger("chat_api.accounts")

# Whoever carries a deletion out holds it this long; after it, the sweeper takes it over.
DELETION_LEASE_MS = 60_000
# The sweeper's period, and how many deletions one sweep takes at most.
SWEEP_INTERVAL = 60.0
SWEEP_BATCH = 20


async def delete_account(caller: ObjectId, user_id: ObjectId | None, *, erase: bool) -> None:
    """Delete the caller's own account (UserNotFound, Forbidden as `own_account` says), all of it, before answering."""
    oid = await user_service.own_account(caller, user_id, "delete")
    now = utc_now()
    # From here on the deletion happens, whatever becomes of this request.
    await users.mark_deletion(oid, erase, now, epoch_ms(now) + DELETION_LEASE_MS)
    await carry_out(oid, erase=erase)


async def carry_out(user_id: ObjectId, *, erase: bool) -> None:
    """Every step of a deletion, in an order where a crash after any step leaves a state the next run finishes."""
    hex_id = str(user_id)
    # The account itself first: its tokens stop working, logins and every route naming it find nobody,
    # and its email and chat_id are free again.
    await users.delete_user(user_id)
    # Requests before friendships: an agree racing this finds no request, or finds its answer refused (the request
    # is gone) and undoes the friendship it made.
    await friends.delete_waiting_requests_of(hex_id)
    sides = await friends.sides_of(hex_id)
    # Its sockets close on every worker (4401); its friends hear it is offline.
    await presence.account_deleted(hex_id, [side["friend_id"] for side in sides if not side.get("friend_deleted")])
    # Each friend keeps the conversation, read-only (its summary erased too with `erase`); the friendship goes.
    updates = [
        friends.ended_side(
            side["friend_id"], hex_id, erased_summary(side.get("last_message"), hex_id) if erase else None
        )
        for side in sides
    ]
    await friends.end_friendships(hex_id, updates)
    # Its blocks and the blocks of it, both ways (after the offline notice above, which leaves out its blockers):
    # nobody is kept away by, or from, an account that no longer exists.
    await blocks.delete_all_of(hex_id)
    await groups.forget_account(hex_id)
    # Its own copies of direct postings: nobody searches as a deleted account.
    await postings.forget_owner(hex_id)
    if erase:
        # Postings first: an erasure cut short after them leaves text nobody finds, never the other way round.
        await postings.forget_sender(hex_id)
        await direct_messages.erase_from(hex_id)
        await groups.erase_messages_from(hex_id)
        await delete_files_of(hex_id)
    await users.deletion_done(user_id)
    log.info("account %s deleted%s", hex_id, " and erased" if erase else "")


async def sweep(now_ms: int | None = None) -> int:
    """Finish the deletions nobody is carrying out any more; how many were finished.

    One indexed query when there is nothing to do. Several workers may sweep at once: the conditional claim gives
    each deletion one of them, and a deletion that fails keeps its new lease and is tried again after it.
    """
    now_ms = now_ms if now_ms is not None else epoch_ms(utc_now())
    finished = 0
    for due in await users.due_deletions(now_ms, SWEEP_BATCH):
        if not await users.claim_deletion(due["_id"], due["lease_until_ms"], now_ms + DELETION_LEASE_MS):
            continue  # another worker took it
        try:
            await carry_out(due["_id"], erase=bool(due.get("erase", False)))
        except Exception:
            log.exception("could not finish the deletion of account %s; it is tried again later", due["_id"])
            continue
        finished += 1
    return finished
