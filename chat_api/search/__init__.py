"""Message search: GET /api/messages/search, over the messages index of chat_api.messages.postings."""
