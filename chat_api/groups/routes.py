"""Group routes: groups, their members (with identities lord, admin, user) and their messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, TypeAdapter
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.auth.decorators import protected
from chat_api.exceptions import BadRequest, Forbidden, NotFound, Unprocessable
from chat_api.groups import service
from chat_api.groups.schemas import (
    GroupCreate,
    GroupCreated,
    GroupMemberPublic,
    GroupMessagePublic,
    GroupMessageSent,
    GroupPublic,
    GroupUpdate,
    IdentityChange,
    MemberAdd,
)
from chat_api.messages.schemas import MessageCursor, MessageIn
from chat_api.openapi import document
from chat_api.users.schemas import Pagination
from chat_api.users.service import CurrentUser
from chat_api.validation import validate_body, validate_query

bp = Blueprint("groups", url_prefix="/api", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = [
    GroupCreate,
    GroupCreated,
    GroupUpdate,
    GroupPublic,
    MemberAdd,
    IdentityChange,
    GroupMemberPublic,
    MessageIn,
    GroupMessagePublic,
    GroupMessageSent,
]
ID_SCHEMA = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}
# Any other string is a 404 (no such group or member), as documented.
GROUP_PATH = {"group_id": ID_SCHEMA}
MEMBER_PATH = {"group_id": ID_SCHEMA, "user_id": ID_SCHEMA}
GROUP_LIST: TypeAdapter[list[GroupPublic]] = TypeAdapter(list[GroupPublic])
MEMBER_LIST: TypeAdapter[list[GroupMemberPublic]] = TypeAdapter(list[GroupMemberPublic])
MESSAGE_LIST: TypeAdapter[list[GroupMessagePublic]] = TypeAdapter(list[GroupMessagePublic])
MANAGERS = ("lord", "admin")


@contextmanager
def http_errors() -> Iterator[None]:
    """The service's domain errors as their HTTP statuses."""
    try:
        yield
    except service.GroupNotFound:
        raise NotFound("Group not found") from None
    except service.UserNotFound:
        raise NotFound("User not found") from None
    except service.NotAllowed as error:
        raise Forbidden(str(error)) from None
    except service.Conflict as error:
        raise Unprocessable(str(error)) from None
    except service.BadMessage as error:
        raise BadRequest(str(error), errors=[{"field": "msg", "message": str(error), "type": "file_url"}]) from None


def me(request: Request) -> str:
    current: CurrentUser = request.ctx.user
    return str(current.id)


async def access(request: Request, group_id: str) -> service.Access:
    with http_errors():
        return await service.access(group_id, me(request))


def require_manager(access: service.Access, action: str) -> None:
    if access.identity not in MANAGERS:
        raise Forbidden(f"Only the lord or an admin may {action}")


def json_bytes(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(body, status=status, headers=headers, content_type="application/json")


@bp.post("/groups")
@document(
    tag="groups",
    body=GroupCreate,
    responses={201: (GroupCreated, "Created; the caller is its lord")},
    headers={201: {"Location": "URL of the new group"}},
    errors=(400, 401, 413),
)
@protected
@validate_body(GroupCreate)
async def create_group(request: Request, body: GroupCreate) -> HTTPResponse:
    """Create a group; the caller becomes its lord."""
    group_id = await service.create_group(body, me(request))
    location = request.app.url_for("groups.get_group", group_id=group_id)
    return json(GroupCreated(group_id=group_id).model_dump(), status=201, headers={"Location": location})


@bp.get("/groups")
@document(
    tag="groups",
    query=Pagination,
    responses={200: (GroupPublic, "The caller's groups, each with the caller's identity", "many")},
    headers={200: {"X-Total-Count": "Number of the caller's groups in all"}},
    errors=(400, 401),
)
@protected
@validate_query(Pagination)
async def list_groups(request: Request, query: Pagination) -> HTTPResponse:
    """List the caller's groups in the order they were created, `limit` (1-200, default 50) from `offset`."""
    page, total = await service.my_groups(me(request), query.limit, query.offset)
    return json_bytes(GROUP_LIST.dump_json(page), headers={"X-Total-Count": str(total)})


@bp.get("/groups/<group_id:str>")
@document(tag="groups", path=GROUP_PATH, responses={200: (GroupPublic, "The group")}, errors=(401, 403, 404))
@protected
async def get_group(request: Request, group_id: str) -> HTTPResponse:
    """Show a group, to its members only."""
    group = await access(request, group_id)
    return json_bytes(group.public().model_dump_json().encode())


@bp.put("/groups/<group_id:str>")
@document(
    tag="groups",
    body=GroupUpdate,
    path=GROUP_PATH,
    responses={204: (None, "Updated")},
    errors=(400, 401, 403, 404, 413),
)
@protected
@validate_body(GroupUpdate)
async def update_group(request: Request, group_id: str, body: GroupUpdate) -> HTTPResponse:
    """Change any of a group's fields (lord or admin); only those in the body change, null clears one."""
    group = await access(request, group_id)
    require_manager(group, "change the group")
    changes = body.model_dump(exclude_unset=True)
    if changes and not await service.update_group(group.group_id, changes):
        raise NotFound("Group not found")
    return empty()


@bp.delete("/groups/<group_id:str>")
@document(tag="groups", path=GROUP_PATH, responses={204: (None, "Deleted")}, errors=(401, 403, 404))
@protected
async def delete_group(request: Request, group_id: str) -> HTTPResponse:
    """Delete a group with its members and messages (lord only)."""
    group = await access(request, group_id)
    if group.identity != "lord":
        raise Forbidden("Only the lord may delete the group")
    await service.delete_group(group.group_id, me(request))
    return empty()


@bp.get("/groups/<group_id:str>/members")
@document(
    tag="groups",
    path=GROUP_PATH,
    query=Pagination,
    responses={200: (GroupMemberPublic, "Members' public profiles with their identity", "many")},
    headers={200: {"X-Total-Count": "Number of members in all"}},
    errors=(400, 401, 403, 404),
)
@protected
@validate_query(Pagination)
async def list_members(request: Request, group_id: str, query: Pagination) -> HTTPResponse:
    """List a group's members (members only), `limit` (1-200, default 50) from `offset`."""
    group = await access(request, group_id)
    page, total = await service.list_members(group.group_id, query.limit, query.offset)
    return json_bytes(MEMBER_LIST.dump_json(page), headers={"X-Total-Count": str(total)})


@bp.post("/groups/<group_id:str>/members")
@document(
    tag="groups",
    body=MemberAdd,
    path=GROUP_PATH,
    responses={201: (GroupMemberPublic, "Added as a plain member")},
    headers={201: {"Location": "URL of the group's members"}},
    errors=(400, 401, 403, 404, 413, 422),
)
@protected
@validate_body(MemberAdd)
async def add_member(request: Request, group_id: str, body: MemberAdd) -> HTTPResponse:
    """Add a friend of the caller to the group (lord or admin)."""
    group = await access(request, group_id)
    require_manager(group, "add members")
    with http_errors():
        read_key = group.group.get("last_key") or ""
        member = await service.add_member(group.group_id, me(request), body.user_id.lower(), read_key)
    location = request.app.url_for("groups.list_members", group_id=group.group_id)
    return json_bytes(member.model_dump_json().encode(), status=201, headers={"Location": location})


@bp.delete("/groups/<group_id:str>/members/<user_id:str>")
@document(tag="groups", path=MEMBER_PATH, responses={204: (None, "Removed")}, errors=(401, 403, 404, 422))
@protected
async def remove_member(request: Request, group_id: str, user_id: str) -> HTTPResponse:
    """Leave a group (anyone but the lord), or remove a member (the lord anyone, an admin plain users)."""
    group = await access(request, group_id)
    target = service.parse_id(user_id)
    if target is None:
        raise NotFound("Not a member of this group")
    leaving = target == me(request)
    if leaving and group.identity == "lord":
        raise Unprocessable("The lord cannot leave the group; delete it instead")
    if not leaving and group.identity not in MANAGERS:
        raise Forbidden("Only the lord or an admin may remove other members")
    with http_errors():
        only_plain = not leaving and group.identity == "admin"
        removed = await service.remove_member(group.group_id, target, only_plain=only_plain)
    if not removed:
        raise NotFound("Not a member of this group")
    return empty()


@bp.put("/groups/<group_id:str>/members/<user_id:str>")
@document(
    tag="groups",
    body=IdentityChange,
    path=MEMBER_PATH,
    responses={204: (None, "Changed")},
    errors=(400, 401, 403, 404, 413, 422),
)
@protected
@validate_body(IdentityChange)
async def set_identity(request: Request, group_id: str, user_id: str, body: IdentityChange) -> HTTPResponse:
    """Make a member an admin or a plain user again (lord only)."""
    group = await access(request, group_id)
    if group.identity != "lord":
        raise Forbidden("Only the lord may change identities")
    target = service.parse_id(user_id)
    if target is None:
        raise NotFound("Not a member of this group")
    if target == me(request):
        raise Unprocessable("The lord's own identity cannot change")
    if not await service.set_identity(group.group_id, target, body.identity):
        raise NotFound("Not a member of this group")
    return empty()


@bp.post("/groups/<group_id:str>/messages")
@document(
    tag="groups",
    body=MessageIn,
    path=GROUP_PATH,
    responses={
        201: (GroupMessageSent, "Sent"),
        200: (GroupMessageSent, "A retry with a client_msg_id already sent: the original message"),
    },
    errors=(400, 401, 403, 404, 413, 422),
)
@protected
@validate_body(MessageIn)
async def send_group_message(request: Request, group_id: str, body: MessageIn) -> HTTPResponse:
    """Send a message to a group (members only); `client_msg_id` makes retries safe."""
    with http_errors():
        sent = await service.send_message(group_id, me(request), body)
    answer = GroupMessageSent(**sent.message.model_dump(), group_message_id=sent.message.id)
    return json_bytes(answer.model_dump_json().encode(), status=201 if sent.created else 200)


@bp.get("/groups/<group_id:str>/messages")
@document(
    tag="groups",
    path=GROUP_PATH,
    query=MessageCursor,
    responses={200: (GroupMessagePublic, "Messages, newest first", "many")},
    errors=(400, 401, 403, 404),
)
@protected
@validate_query(MessageCursor)
async def list_group_messages(request: Request, group_id: str, query: MessageCursor) -> HTTPResponse:
    """A group's messages newest first (members only), `limit` (1-200, default 50) older than `before`."""
    group = await access(request, group_id)
    page = await service.history(group.group_id, query.before, query.limit)
    return json_bytes(MESSAGE_LIST.dump_json(page))
