"""Shared type aliases."""

from typing import Any, TypeAlias

from sanic import Sanic

ChatApp: TypeAlias = Sanic[Any, Any]
