"""Request and response models for login."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, StringConstraints, ValidationError, WithJsonSchema

from chat_api.common.fields import CHAT_ID_FORMS, EMAIL_ADAPTER, StrictModel, whole_number


def _login_identifier(value: Any) -> int | str:
    """The frontend's `chat_id` box also takes an email: `@` means email, else a chat_id."""
    if isinstance(value, str) and "@" in value:
        try:
            return EMAIL_ADAPTER.validate_python(value)
        except ValidationError:
            raise ValueError("must be a chat_id or a valid email address") from None
    return whole_number(value, minimum=1)


LoginIdentifier = Annotated[
    int | str,
    BeforeValidator(_login_identifier),
    WithJsonSchema(
        {
            "anyOf": [*CHAT_ID_FORMS, {"type": "string", "format": "email"}],
            "description": "A chat_id (integer or digit string), or an email address.",
        }
    ),
]


class LoginRequest(StrictModel):
    chat_id: LoginIdentifier
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TokenResponse(BaseModel):
    token: str
