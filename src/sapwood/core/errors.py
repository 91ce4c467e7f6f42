"""Typed errors of the store. Each maps to one HTTP status, so every layer reports them the same way."""

from __future__ import annotations

from typing import ClassVar


class SapwoodError(Exception):
    """Base of every error Sapwood reports to a client; `status` is the HTTP status it maps to."""

    # A ClassVar: under mypyc an unannotated class-body value is an instance attribute default,
    # which subclasses of a compiled exception do not get.
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SapwoodError):
    """The request is malformed or asks for something invalid; nothing was changed."""

    status: ClassVar[int] = 400


class NotFound(SapwoodError):
    status: ClassVar[int] = 404


class Conflict(SapwoodError):
    """The request is valid but the stored state refuses it (e.g. too many siblings)."""

    status: ClassVar[int] = 409


class PreconditionFailed(SapwoodError):
    """A conditional request's condition (If-Match, context, CAS) does not hold."""

    status: ClassVar[int] = 412


class TooLarge(SapwoodError):
    status: ClassVar[int] = 413


class Unavailable(SapwoodError):
    """Not enough replicas answered (quorum unmet, timeout, no majority)."""

    status: ClassVar[int] = 503


_BY_STATUS: dict[int, type[SapwoodError]] = {
    400: BadRequest, 404: NotFound, 409: Conflict, 412: PreconditionFailed, 413: TooLarge,
    503: Unavailable,
}


def error_from_status(status: int, message: str) -> SapwoodError:
    """Rebuild a typed error that crossed the wire as (status, message)."""
    return _BY_STATUS.get(status, SapwoodError)(message)
