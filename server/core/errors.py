"""Domain errors the HTTP edge maps to status codes. Services raise these, never HTTPException."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"


class Timeout(DomainError):
    """A device did not answer in time (the request itself was fine)."""

    status_code = 504
    code = "timeout"
