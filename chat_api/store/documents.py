"""Every Beanie document of the app, for init_beanie and the index scripts."""

from beanie import Document

from chat_api.blocks.models import Block
from chat_api.events.models import Event, EventCounter
from chat_api.files.models import FileChunk, StoredFile
from chat_api.friends.models import DirectConversation, Friendship, UserRequest
from chat_api.groups.models import Group, GroupMember, GroupMessage, GroupPin
from chat_api.messages.models import DirectMessage, MessageTerm
from chat_api.ratelimit.models import RateLimitCounter
from chat_api.realtime.models import PresenceRecord, ProcessHeartbeat
from chat_api.users.models import AccountDeletion, User

DOCUMENT_MODELS: list[type[Document]] = [
    User,
    AccountDeletion,
    RateLimitCounter,
    UserRequest,
    Friendship,
    DirectConversation,
    Block,
    DirectMessage,
    MessageTerm,
    Group,
    GroupMember,
    GroupMessage,
    GroupPin,
    Event,
    EventCounter,
    PresenceRecord,
    ProcessHeartbeat,
    # GridFS's collections, written by PyMongo's bucket; on nx-27017 their indexes are the
    # store's own (chat_api.store.indexes, GRIDFS_COLLECTIONS).
    StoredFile,
    FileChunk,
]
