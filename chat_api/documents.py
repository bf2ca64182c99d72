"""Every Beanie document of the app, for init_beanie and the index scripts."""

from beanie import Document

from chat_api.ratelimit.models import RateLimitCounter
from chat_api.users.models import User

DOCUMENT_MODELS: list[type[Document]] = [User, RateLimitCounter]
