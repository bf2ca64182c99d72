"""`@endpoint`: a route's whole contract in one place: the token it needs, what it validates, its OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Unpack

from pydantic import BaseModel

from chat_api.common.pagination import Pagination
from chat_api.http.auth import protected
from chat_api.http.openapi import Contract, document
from chat_api.http.validation import Handler, validate_body, validate_query


def endpoint(*, auth: bool = True, **contract: Unpack[Contract]) -> Callable[[Handler], Handler]:
    """Validate the JSON `body` (passed as `body=`) or the `query` (as `query=`), behind `@protected`
    when `auth` (so an anonymous caller gets 401, not 400), and document all of it (`document`)."""
    body, query = contract.get("body"), contract.get("query")

    def decorator(handler: Handler) -> Handler:
        if body is not None:
            handler = validate_body(body)(handler)
        if query is not None:
            handler = validate_query(query)(handler)
        if auth:
            handler = protected(handler)
        return document(**contract)(handler)

    return decorator


def paged(item: type[BaseModel], listed: str, total: str, errors: Sequence[int] = (400, 401)) -> dict[str, Any]:
    """The contract of a paged list route (`limit` and `offset`), for `endpoint(**paged(...))`: a
    list of `item`s described as `listed`, and `X-Total-Count`, described as `total`."""
    return {
        "errors": errors,
        "query": Pagination,
        "responses": {200: (item, listed, "many")},
        "headers": {200: {"X-Total-Count": total}},
    }
