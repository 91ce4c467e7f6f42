"""What nodes exchange about consistent groups, and the timer keys of a node's ensemble host.

Raft messages between members travel inside an `EnsembleEnvelope` naming both ends, so one
connection between two nodes carries every group (and several members of one group may live on
one node). Client operations reach a member on another node as an `EnsembleCall`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sapwood.core.consensus import Delete, Get, Put, RaftMessage, Result, TimerKind
from sapwood.core.records import fast_init

ConsistentCommand = Put | Delete | Get

TICK_TIMER = ("ensemble-tick",)
REPLICA_TIMER = "ensemble"
OP_TIMER = "ensemble-op"


@fast_init
@dataclass(frozen=True, slots=True)
class EnsembleEnvelope:
    """A Raft message from member `from_member` to member `to_member` of `group`."""

    group: str
    from_member: str
    to_member: str
    msg: RaftMessage


@fast_init
@dataclass(frozen=True, slots=True)
class EnsembleCall:
    """Run `command` at `member` (a `Get` is a linearizable read, not a log entry) and answer
    node `origin` with an `EnsembleAnswer` carrying `call_id`."""

    call_id: int
    origin: str
    group: str
    member: str
    command: ConsistentCommand


@fast_init
@dataclass(frozen=True, slots=True)
class EnsembleAnswer:
    call_id: int
    result: Result


@fast_init
@dataclass(frozen=True, slots=True)
class EnsemblePersisted:
    """A flush made a member's writes durable up to `token` (sent by a node to itself).

    `generation` names the replica object that issued the token: a member dropped and created
    again on this node counts tokens from 1 anew, and must not take an old completion as its own.
    """

    group: str
    member: str
    generation: int
    token: int


@fast_init
@dataclass(frozen=True, slots=True)
class EnsembleRetireQuery:
    """`member` has left (or is leaving) the ring's members of `group`: has its removal from
    the group committed? Asked of the group's other members; a leader that knows answers."""

    group: str
    member: str


@fast_init
@dataclass(frozen=True, slots=True)
class EnsembleRetired:
    """The group committed a configuration without `member`: its node may drop its state."""

    group: str
    member: str


def replica_timer(group: str, member: str, kind: TimerKind) -> tuple[str, str, str, str]:
    return (REPLICA_TIMER, group, member, kind.value)


# The one timer behind every open operation's wake time (see ensemble_wakes).
OPS_TIMER = (OP_TIMER,)


def is_ensemble_timer(key: Any) -> bool:
    return isinstance(key, tuple) and bool(key) and key[0] in (
        REPLICA_TIMER, OP_TIMER, TICK_TIMER[0])


ENSEMBLE_MESSAGES = (EnsembleEnvelope, EnsembleCall, EnsembleAnswer, EnsemblePersisted,
                     EnsembleRetireQuery, EnsembleRetired)
ENSEMBLE_TYPES = frozenset(ENSEMBLE_MESSAGES)  # for exact-type tests (final classes)
