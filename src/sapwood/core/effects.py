"""Effects: what a core object asks its driver to do. The core never performs them itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sapwood.core.records import fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `msg` to the node named `to` (which may be this node)."""

    to: str
    msg: Any


@fast_init
@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the client request `req_id` with `result` (a result dataclass or a SapwoodError)."""

    req_id: int
    result: Any


@fast_init
@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `on_timer(key)` of the owner at (virtual or real) time `at_ms`.

    Setting a timer replaces any earlier timer with the same key.
    """

    key: Any
    at_ms: int


@fast_init
@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: Any


@fast_init
@dataclass(frozen=True, slots=True)
class Flush:
    """Make every backend write so far durable (fsync), then deliver `done` to the node named `to`.

    The driver batches flushes (group commit) so many writes share one fsync.
    """

    to: str
    done: Any


Effect = Send | Reply | SetTimer | CancelTimer | Flush
