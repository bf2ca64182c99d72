"""Group routes: groups, their members (with identities lord, admin, user) and their messages."""

from __future__ import annotations

from pydantic import TypeAdapter
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.common.pagination import Pagination
from chat_api.groups import service
from chat_api.groups.schemas import (
    GroupCreate,
    GroupCreated,
    GroupMemberPublic,
    GroupMessageIn,
    GroupMessagePublic,
    GroupMessageSent,
    GroupPublic,
    GroupUpdate,
    IdentityChange,
    MemberAdd,
    MessageReads,
    PinnedMessage,
    ReadsQuery,
)
from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint, paged
from chat_api.http.responses import json_bytes, json_model, json_page
from chat_api.http.validation import path_text
from chat_api.messages.schemas import EMOJI_PATH, MessageCursor, MessageEdit

bp = Blueprint("groups", url_prefix="/api", strict_slashes=False)
# Any other string is a 404 (no such group or member), as documented.
GROUP_PATH = {"group_id": OBJECT_ID_PATH}
MEMBER_ERRORS = (400, 401, 403, 404)
MEMBER_PATH = {"group_id": OBJECT_ID_PATH, "user_id": OBJECT_ID_PATH}
MESSAGE_PATH = {"group_id": OBJECT_ID_PATH, "message_id": OBJECT_ID_PATH}
GROUP_LIST: TypeAdapter[list[GroupPublic]] = TypeAdapter(list[GroupPublic])
MEMBER_LIST: TypeAdapter[list[GroupMemberPublic]] = TypeAdapter(list[GroupMemberPublic])
MESSAGE_LIST: TypeAdapter[list[GroupMessagePublic]] = TypeAdapter(list[GroupMessagePublic])
PIN_LIST: TypeAdapter[list[PinnedMessage]] = TypeAdapter(list[PinnedMessage])


async def access(request: Request, group_id: str) -> service.Access:
    """The group as the caller sees it: 404 for no such group, 403 for a caller who is not a member."""
    return await service.access(group_id, current_user_id(request))


@bp.post("/groups")
@endpoint(
    tag="groups",
    body=GroupCreate,
    responses={201: (GroupCreated, "Created; the caller is its lord")},
    headers={201: {"Location": "URL of the new group"}},
    errors=(400, 401, 413),
)
async def create_group(request: Request, body: GroupCreate) -> HTTPResponse:
    """Create a group; the caller becomes its lord."""
    group_id = await service.create_group(body, current_user_id(request))
    location = request.app.url_for("groups.get_group", group_id=group_id)
    return json(GroupCreated(group_id=group_id).model_dump(), status=201, headers={"Location": location})


@bp.get("/groups")
@endpoint(
    tag="groups",
    **paged(
        GroupPublic, "The caller's groups, each with the caller's identity", "Number of the caller's groups in all"
    ),
)
async def list_groups(request: Request, query: Pagination) -> HTTPResponse:
    """List the caller's groups in the order they were created, `limit` (1-200, default 50) from `offset`."""
    return json_page(GROUP_LIST, *await service.my_groups(current_user_id(request), query.limit, query.offset))


@bp.get("/groups/<group_id:str>")
@endpoint(tag="groups", path=GROUP_PATH, responses={200: (GroupPublic, "The group")}, errors=(401, 403, 404))
async def get_group(request: Request, group_id: str) -> HTTPResponse:
    """Show a group, to its members only."""
    return json_model((await access(request, group_id)).public())


@bp.put("/groups/<group_id:str>")
@endpoint(
    tag="groups",
    body=GroupUpdate,
    path=GROUP_PATH,
    responses={204: (None, "Updated")},
    errors=(400, 401, 403, 404, 413),
)
async def update_group(request: Request, group_id: str, body: GroupUpdate) -> HTTPResponse:
    """Change any of a group's fields (lord or admin); only those in the body change, null clears one."""
    await service.update_group(await access(request, group_id), body.model_dump(exclude_unset=True))
    return empty()


@bp.delete("/groups/<group_id:str>")
@endpoint(tag="groups", path=GROUP_PATH, responses={204: (None, "Deleted")}, errors=(401, 403, 404))
async def delete_group(request: Request, group_id: str) -> HTTPResponse:
    """Delete a group with its members and messages (lord only)."""
    await service.delete_group(await access(request, group_id))
    return empty()


@bp.get("/groups/<group_id:str>/members")
@endpoint(
    tag="groups",
    path=GROUP_PATH,
    **paged(
        GroupMemberPublic, "Members' public profiles with their identity", "Number of members in all", MEMBER_ERRORS
    ),
)
async def list_members(request: Request, group_id: str, query: Pagination) -> HTTPResponse:
    """List a group's members (members only), `limit` (1-200, default 50) from `offset`."""
    group = await access(request, group_id)
    return json_page(MEMBER_LIST, *await service.list_members(group.group_id, query.limit, query.offset))


@bp.post("/groups/<group_id:str>/members")
@endpoint(
    tag="groups",
    body=MemberAdd,
    path=GROUP_PATH,
    responses={201: (GroupMemberPublic, "Added as a plain member")},
    headers={201: {"Location": "URL of the group's members"}},
    errors=(400, 401, 403, 404, 413, 422),
)
async def add_member(request: Request, group_id: str, body: MemberAdd) -> HTTPResponse:
    """Add a friend of the caller to the group (lord or admin)."""
    group = await access(request, group_id)
    member = await service.add_member(group, body.user_id)
    location = request.app.url_for("groups.list_members", group_id=group.group_id)
    return json_model(member, status=201, headers={"Location": location})


@bp.delete("/groups/<group_id:str>/members/<user_id:str>")
@endpoint(tag="groups", path=MEMBER_PATH, responses={204: (None, "Removed")}, errors=(401, 403, 404, 422))
async def remove_member(request: Request, group_id: str, user_id: str) -> HTTPResponse:
    """Leave a group (anyone but the lord), or remove a member (the lord anyone, an admin plain users)."""
    await service.remove_member(await access(request, group_id), user_id)
    return empty()


@bp.put("/groups/<group_id:str>/members/<user_id:str>")
@endpoint(
    tag="groups",
    body=IdentityChange,
    path=MEMBER_PATH,
    responses={204: (None, "Changed")},
    errors=(400, 401, 403, 404, 413, 422),
)
async def set_identity(request: Request, group_id: str, user_id: str, body: IdentityChange) -> HTTPResponse:
    """Make a member an admin or a plain user again (lord only)."""
    await service.set_identity(await access(request, group_id), user_id, body.identity)
    return empty()


@bp.post("/groups/<group_id:str>/messages")
@endpoint(
    tag="groups",
    body=GroupMessageIn,
    path=GROUP_PATH,
    responses={
        201: (GroupMessageSent, "Sent"),
        200: (GroupMessageSent, "A retry with a client_msg_id already sent: the original message"),
    },
    errors=(400, 401, 403, 404, 413, 422),
)
async def send_group_message(request: Request, group_id: str, body: GroupMessageIn) -> HTTPResponse:
    """Send a message to a group (members only), mentioning members or everyone; `client_msg_id` makes retries safe."""
    sent = await service.send_message(group_id, current_user_id(request), body)
    answer = GroupMessageSent(**sent.message.model_dump(), group_message_id=sent.message.id)
    return json_model(answer, status=201 if sent.created else 200)


@bp.get("/groups/<group_id:str>/messages")
@endpoint(
    tag="groups",
    path=GROUP_PATH,
    query=MessageCursor,
    responses={200: (GroupMessagePublic, "Messages, newest first", "many")},
    errors=(400, 401, 403, 404),
)
async def list_group_messages(request: Request, group_id: str, query: MessageCursor) -> HTTPResponse:
    """A group's messages newest first (members only), `limit` (1-200, default 50) older than `before`."""
    group = await access(request, group_id)
    page = await service.history(group.group_id, query.before, query.limit, group.user_id)
    return json_bytes(MESSAGE_LIST.dump_json(page))


GROUP_MESSAGE_PATH = {"group_id": OBJECT_ID_PATH, "message_id": OBJECT_ID_PATH}
GROUP_REACTION_PATH = {**GROUP_MESSAGE_PATH, "emoji": EMOJI_PATH}


@bp.delete("/groups/<group_id:str>/messages/<message_id:str>")
@endpoint(
    tag="groups", path=GROUP_MESSAGE_PATH, responses={204: (None, "Recalled (or already)")}, errors=(401, 403, 404, 422)
)
async def recall_group_message(request: Request, group_id: str, message_id: str) -> HTTPResponse:
    """Recall a message: its sender within RECALL_WINDOW, the lord or an admin any message at any time."""
    group = await access(request, group_id)
    await service.recall_message(group, message_id, request.app.ctx.settings.recall_window)
    return empty()


@bp.patch("/groups/<group_id:str>/messages/<message_id:str>")
@endpoint(
    tag="groups",
    body=MessageEdit,
    path=GROUP_MESSAGE_PATH,
    responses={200: (GroupMessagePublic, "The message as it is now")},
    errors=(400, 401, 403, 404, 413, 422),
)
async def edit_group_message(request: Request, group_id: str, message_id: str, body: MessageEdit) -> HTTPResponse:
    """Change the text of a txt message I sent to the group, within EDIT_WINDOW."""
    group = await access(request, group_id)
    return json_model(await service.edit_message(group, message_id, body.msg, request.app.ctx.settings.edit_window))


@bp.put("/groups/<group_id:str>/messages/<message_id:str>/reactions/<emoji:str>")
@endpoint(
    tag="groups",
    path=GROUP_REACTION_PATH,
    responses={204: (None, "Reacted (or already)")},
    errors=(400, 401, 403, 404, 422),
)
async def add_group_reaction(request: Request, group_id: str, message_id: str, emoji: str) -> HTTPResponse:
    """React to a group message with an emoji (members only)."""
    await service.react_to_message(await access(request, group_id), message_id, path_text(emoji, "emoji"), add=True)
    return empty()


@bp.delete("/groups/<group_id:str>/messages/<message_id:str>/reactions/<emoji:str>")
@endpoint(
    tag="groups",
    path=GROUP_REACTION_PATH,
    responses={204: (None, "Taken back (or there was none)")},
    errors=(400, 401, 403, 404, 422),
)
async def remove_group_reaction(request: Request, group_id: str, message_id: str, emoji: str) -> HTTPResponse:
    """Take back my reaction with this emoji (members only)."""
    await service.react_to_message(await access(request, group_id), message_id, path_text(emoji, "emoji"), add=False)
    return empty()


@bp.get("/groups/<group_id:str>/messages/<message_id:str>/reads")
@endpoint(
    tag="groups",
    path=MESSAGE_PATH,
    query=ReadsQuery,
    responses={200: (MessageReads, "Who of the members it was sent to has read it")},
    errors=(400, 401, 403, 404),
)
async def message_reads(request: Request, group_id: str, message_id: str, query: ReadsQuery) -> HTTPResponse:
    """Who has read a group message and who has not (its sender, the lord or an admin), `limit` of each list."""
    reads = await service.reads(group_id, current_user_id(request), message_id, query.limit, query.offset)
    return json_model(reads)


@bp.get("/groups/<group_id:str>/pins")
@endpoint(
    tag="groups",
    path=GROUP_PATH,
    responses={200: (PinnedMessage, "The pinned messages, most recently pinned first", "many")},
    errors=(401, 403, 404),
)
async def list_pins(request: Request, group_id: str) -> HTTPResponse:
    """A group's pinned messages, most recently pinned first (members only)."""
    group = await access(request, group_id)
    return json_bytes(PIN_LIST.dump_json(await service.pinned_messages(group.group_id, group.user_id)))


@bp.put("/groups/<group_id:str>/pins/<message_id:str>")
@endpoint(tag="groups", path=MESSAGE_PATH, responses={204: (None, "Pinned")}, errors=(401, 403, 404, 422))
async def pin_message(request: Request, group_id: str, message_id: str) -> HTTPResponse:
    """Pin a message of the group (lord or admin; at most 50 pins); pinning it again changes nothing."""
    await service.pin(await access(request, group_id), message_id)
    return empty()


@bp.delete("/groups/<group_id:str>/pins/<message_id:str>")
@endpoint(tag="groups", path=MESSAGE_PATH, responses={204: (None, "Unpinned")}, errors=(401, 403, 404))
async def unpin_message(request: Request, group_id: str, message_id: str) -> HTTPResponse:
    """Unpin a message of the group (lord or admin); unpinning it again changes nothing."""
    await service.unpin(await access(request, group_id), message_id)
    return empty()
