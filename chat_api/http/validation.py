"""Request validation: the JSON body and the query string parsed into models, bad input a clean 400."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import unquote

from pydantic import BaseModel, TypeAdapter, ValidationError
from sanic import Request
from sanic.response import HTTPResponse

from chat_api.common.errors import Invalid, field_errors

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Handler = Callable[..., Awaitable[HTTPResponse]]


def parse_model(model: type[M], data: Any, prefix: tuple[str | int, ...] = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise Invalid(errors=field_errors(error, prefix)) from None


def path_text(value: str, field: str) -> str:
    """A path parameter that is text (an emoji): Sanic hands it over still percent-encoded; decoded once, as
    UTF-8, and a 400 naming `field` if it is not."""
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        message = f"`{field}` must be percent-encoded UTF-8"
        raise Invalid(message, errors=[{"field": field, "message": message, "type": "encoding"}]) from None


def parse_value(adapter: TypeAdapter[T], value: Any, field: str, message: str) -> T:
    """Validate one value (a path parameter): a 400 with `message` naming `field` if invalid."""
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise Invalid(message, errors=field_errors(error, (field,))) from None


def validate_body(model: type[BaseModel]) -> Callable[[Handler], Handler]:
    """Parse the JSON body into `model` and pass it to the handler as `body`."""

    def decorator(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            data = request.json  # malformed JSON raises Sanic's BadRequest: a JSON 400
            if not isinstance(data, dict):
                raise Invalid("The request body must be a JSON object")
            kwargs["body"] = parse_model(model, data)
            return await handler(request, *args, **kwargs)

        return wrapper

    return decorator


def validate_query(model: type[BaseModel]) -> Callable[[Handler], Handler]:
    """Parse the query string into `model` and pass it to the handler as `query`.

    Unknown parameters are refused (400) like unknown body fields: a misspelt `?limt=10` would
    otherwise be answered as if the client had asked for the default.
    """

    def decorator(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            # Blank values kept: `?limit=` is invalid input (400), not a request for the default.
            given = request.get_args(keep_blank_values=True)
            data = {name: given.get(name) for name in given}
            kwargs["query"] = parse_model(model, data, prefix=("query",))
            return await handler(request, *args, **kwargs)

        return wrapper

    return decorator
