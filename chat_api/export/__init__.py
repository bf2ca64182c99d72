"""`GET /api/users/<own id>/export`: everything the service holds about a user, as one streamed JSON document."""
