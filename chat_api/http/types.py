"""The app's type: a Sanic app with untyped config and context."""

from typing import Any, TypeAlias

from sanic import Sanic

ChatApp: TypeAlias = Sanic[Any, Any]
