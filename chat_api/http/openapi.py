"""OpenAPI: pydantic models registered as components, and per-status responses on each route.

sanic-ext renders a pydantic model handed to it directly inline and wrongly (`model_config`
as a property, `EmailStr` as `object`), so each model's own JSON schema is registered as a
component and routes refer to it by `$ref`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Required, TypedDict, TypeVar, Unpack

from pydantic import BaseModel
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import Parameter, Response

from chat_api import __version__
from chat_api.http.types import ChatApp

F = TypeVar("F", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"
ResponseSpec = tuple[type[BaseModel] | None, str] | tuple[type[BaseModel], str, Literal["many"]]
# Every model a route documents (its body and its answers), registered as a component by setup_openapi.
DOCUMENTED_MODELS: dict[str, type[BaseModel]] = {}


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    message: str
    errors: list[FieldError] | None = None


class MessageBody(BaseModel):
    message: str


class RateLimited(BaseModel):
    message: str
    retry_after_ms: int


RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": "The budgets of this route (draft-ietf-httpapi-ratelimit-headers-11)",
    "RateLimit": "What is left of the caller's budget and seconds until it refills",
}


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def json_content(model: type[BaseModel], many: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": ref(model)} if many else ref(model)
    return {"application/json": {"schema": schema}}


ERROR_DESCRIPTIONS = {
    400: "Invalid input",
    401: "Missing, invalid, expired or revoked token",
    403: "Not allowed for this user",
    404: "Not found",
    413: "Body over 1 MiB (an uploaded file: over 5 MiB)",
    415: "Not a file of an accepted type",
    422: "Conflicts with stored data",
    429: "A rate limit is used up; retry after Retry-After seconds",
    500: "Unexpected error",
    503: "The store is unavailable",
}
# Any route that reaches the store can meet it down, and any route can fail unexpectedly.
ALWAYS = (500, 503)


def _headers(described: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in described.items()}


def component(model: type[BaseModel]) -> None:
    """Show `model` among the document's schemas (a route's own models are shown without this)."""
    DOCUMENTED_MODELS.setdefault(model.__name__, model)


class Contract(TypedDict, total=False):
    """What a route declares: its tag, responses per status, error statuses, body, query, path and headers."""

    tag: Required[str]
    responses: Required[Mapping[int, ResponseSpec]]
    errors: Sequence[int]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    path: Mapping[str, Mapping[str, Any]] | None
    headers: Mapping[int, Mapping[str, str]] | None


def document(**contract: Unpack[Contract]) -> Callable[[F], F]:
    """Declare a route's body, query, path parameters, and responses per status, each by `$ref`.

    Parameters carry the JSON schema the route enforces (sanic-ext would document every path
    parameter as a bare string and every query parameter without its bounds).
    """
    tag, responses, errors = contract["tag"], contract["responses"], contract.get("errors", ())
    body, query = contract.get("body"), contract.get("query")
    path, headers = contract.get("path"), contract.get("headers")
    for model in (body, *(spec[0] for spec in responses.values())):
        if model is not None:
            component(model)

    def decorator(handler: F) -> F:
        if body is not None:
            # openapi.body wraps the handler and moves its documentation to the wrapper,
            # so it goes first and the wrapper is what the route gets.
            handler = openapi.body(json_content(body), required=True)(handler)
        openapi.tag(tag)(handler)
        openapi.operation(handler.__name__)(handler)
        operation = OperationStore()[handler]  # type: ignore[no-untyped-call]
        for name, schema in (path or {}).items():
            # A declared path parameter replaces the bare string sanic-ext would add.
            operation.parameters.append(json_parameter(name, schema, "path", required=True))
        if query is not None:
            operation.parameters.extend(query_parameters(query))
        for status, spec in responses.items():
            model, description = spec[0], spec[1]
            many = len(spec) == 3
            extra: dict[str, Any] = {}
            shown = {**(headers or {}).get(status, {}), **(RATE_LIMIT_HEADERS if 429 in errors else {})}
            if shown:
                extra["headers"] = _headers(shown)
            if model is None:
                # No body at all: sanic-ext would document one of any type (`*/*`).
                operation.responses[status] = Response(status=status, description=description, **extra)
            else:
                openapi.response(status, json_content(model, many), description, **extra)(handler)
        for status in errors:
            if status == 429:
                limited = {**RATE_LIMIT_HEADERS, "Retry-After": "Seconds to wait before trying again"}
                extra = {"headers": _headers(limited)}
                openapi.response(429, json_content(RateLimited), ERROR_DESCRIPTIONS[429], **extra)(handler)
            else:
                openapi.response(status, json_content(ErrorBody), ERROR_DESCRIPTIONS[status])(handler)
        for status in ALWAYS:
            if status not in errors:
                openapi.response(status, json_content(ErrorBody), ERROR_DESCRIPTIONS[status])(handler)
        return handler

    return decorator


def query_parameters(model: type[BaseModel]) -> list[Parameter]:
    """One query parameter per field of `model`, with the field's own JSON schema (bounds, default)."""
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        field = {key: value for key, value in field.items() if key not in ("title", "description")}
        description = model.model_fields[name].description
        parameters.append(json_parameter(name, field, "query", description=description, required=name in required))
    return parameters


def json_parameter(name: str, schema: Mapping[str, Any], location: str, **kwargs: Any) -> Parameter:
    # A JSON schema given as a dict is serialised as it is; the annotation only knows sanic-ext's own types.
    return Parameter(name, dict(schema), location, **kwargs)  # type: ignore[arg-type]


def component_schemas(models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


OPENAPI_CONFIG = {
    # Swagger UI at /docs (sanic-ext shows ReDoc there by default); one UI is enough.
    "OAS_UI_DEFAULT": "swagger",
    "OAS_UI_REDOC": False,
    "OAS_AUTODOC": True,
    # Swagger UI would otherwise send the document's URL to validator.swagger.io for a badge.
    "SWAGGER_UI_CONFIGURATION": {
        "apisSorter": "alpha",
        "operationsSorter": "alpha",
        "docExpansion": "full",
        "validatorUrl": None,
    },
}


def setup_openapi(app: ChatApp) -> None:
    """Call after Extend(app) and once the routes are imported; OPENAPI_CONFIG must be in app.config before it."""
    app.ext.openapi.describe(
        "chat_api",
        version=__version__,
        description="Chat backend: users, availability checks, register and login with JWT.",
    )
    app.ext.openapi.add_security_scheme(
        "bearerAuth",
        "http",
        scheme="bearer",
        bearer_format="JWT",
        description="`Authorization: Bearer <jwt>` as returned by POST /api/login (a bare <jwt> works too).",
    )
    schemas = component_schemas([ErrorBody, FieldError, MessageBody, RateLimited, *DOCUMENTED_MODELS.values()])
    app.ext.openapi.raw({"components": {"schemas": schemas}})  # type: ignore[no-untyped-call]
