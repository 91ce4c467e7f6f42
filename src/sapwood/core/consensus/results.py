"""Typed answers to client requests. Normal outcomes are values, never exceptions.

Whether an operation took effect is part of the type, because a linearizability checker needs
it: `Precondition`, `NotLeader`, `Unavailable`, `Invalid` and `TooLarge` mean the operation
did not and will not take effect; `Indeterminate` means it may have or may still.
"""

from __future__ import annotations

from dataclasses import dataclass

from sapwood.core import errors
from sapwood.core.consensus.messages import Version
from sapwood.core.records import fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class Ok:
    """Success. For a write: the new version (value None after a delete); for a read: current."""

    version: Version
    value: bytes | None


@fast_init
@dataclass(frozen=True, slots=True)
class Absent:
    """The key does not exist (a read, or an unconditional delete that found nothing)."""

    key: bytes


@fast_init
@dataclass(frozen=True, slots=True)
class Precondition:
    """The expected version did not match; nothing changed (HTTP 412)."""

    message: str


@fast_init
@dataclass(frozen=True, slots=True)
class NotLeader:
    """This replica cannot serve the request; `leader_hint` is the leader it last heard of."""

    leader_hint: str | None


@fast_init
@dataclass(frozen=True, slots=True)
class Unavailable:
    """Refused without effect: no quorum, a full queue, or superseded before commit."""

    message: str


@fast_init
@dataclass(frozen=True, slots=True)
class Indeterminate:
    """The write was in the log but its fate is unknown here (leadership lost, timed out)."""

    message: str


@fast_init
@dataclass(frozen=True, slots=True)
class Invalid:
    """The request is malformed or not allowed (e.g. removing the last member)."""

    message: str


@fast_init
@dataclass(frozen=True, slots=True)
class TooLarge:
    message: str


@fast_init
@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """A membership change committed; `members` is the voter set it installed."""

    members: tuple[str, ...]
    version: Version


Result = (
    Ok
    | Absent
    | Precondition
    | NotLeader
    | Unavailable
    | Indeterminate
    | Invalid
    | TooLarge
    | ConfigApplied
)


def as_error(result: Result) -> errors.SapwoodError | None:
    """The store-wide error a failed result maps to (None for Ok, Absent and ConfigApplied)."""
    if isinstance(result, Precondition):
        return errors.PreconditionFailed(result.message)
    if isinstance(result, NotLeader):
        hint = result.leader_hint or "unknown"
        return errors.Unavailable(f"not the leader of this consistent group (leader: {hint})")
    if isinstance(result, Unavailable | Indeterminate):
        return errors.Unavailable(result.message)
    if isinstance(result, Invalid):
        return errors.BadRequest(result.message)
    if isinstance(result, TooLarge):
        return errors.TooLarge(result.message)
    return None
