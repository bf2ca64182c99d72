"""chat_api: a chat backend on Sanic and MongoDB."""

__version__ = "1.0.0"
