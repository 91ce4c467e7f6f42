"""The consistent groups follow the ring: a node's half of every membership change (see
`ensembles` for why founding and dropping members is safe).

The leader of each group compares its voters with the primaries of the planned ring and changes
one member at a time: add a missing one (whose node is up), then remove one that is leaving. A
removed member's node is told (and asks, until told) and then drops it. A member that stores no
log (no entry, no snapshot) is dropped without waiting for the group when it waits for a group
the settled ring does not have, or when the ring no longer wants it and its group has gone quiet
towards it; every dropped member leaves its hard state behind (`MemberStorage.retire`), so a
member created again under its id starts from its term and vote.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from mypy_extensions import trait

from sapwood.core.consensus import (
    AddMember,
    ConfigApplied,
    HardState,
    Indeterminate,
    NotLeader,
    RaftConfig,
    RemoveMember,
    Result,
    Role,
    TimerKind,
)
from sapwood.core.effects import CancelTimer, Effect, Send
from sapwood.core.ensemble_groups import RingView, member_node, members_under
from sapwood.core.ensemble_members import Call, CallKind, HostCounters, Hosted
from sapwood.core.ensemble_messages import EnsembleRetired, EnsembleRetireQuery, replica_timer
from sapwood.core.ensemble_ops import ConsistentOp

RECONFIG_TIMEOUT_MS = 10_000  # a membership change not answered by then is tried afresh
# A leaving member without a log is dropped once no message of its group reached it for this
# long: a member of its group that holds a log asks for its vote every election timeout, and may
# need it to form a majority (and then remove it properly).
ORPHAN_QUIET_MS = 10_000
DROPPED_WRITE = ("its member left the group with the write in its log; the write may or may not "
                 "have been applied")


# A trait: mypyc compiles a class with several bases only when all but one are traits.
@trait
class RingFollower:
    """The membership half of `EnsembleHost` (a mixin: the host owns the state used here)."""

    node: str
    config: RaftConfig
    ring: RingView
    ring_confirmed: bool
    now_ms: int
    hosted: dict[tuple[str, str], Hosted]
    _by_group: dict[str, list[Hosted]]
    _kept: dict[tuple[str, str], HardState]
    ops: dict[int, ConsistentOp]
    calls: dict[int, Call]
    reconfiguring: dict[str, int]
    suspects: dict[str, int]
    counters: HostCounters
    _call_ids: Iterator[int]
    _queue: deque[tuple[Hosted, list[Any]]]
    _out: list[Effect]
    _ticking: bool

    # --- provided by the host -----------------------------------------------------------------

    def _reachable(self, member: str) -> bool:
        raise NotImplementedError

    def _answered(self, call_id: int, result: Result) -> None:
        raise NotImplementedError

    def _arm_tick(self) -> None:
        raise NotImplementedError

    # --- the tick -------------------------------------------------------------------------------

    def _tick(self) -> None:
        self._ticking = False
        now = self.now_ms
        self.suspects = {n: t for n, t in self.suspects.items() if t > now}
        for call_id, call in list(self.calls.items()):
            if call.kind is CallKind.RECONFIG and now - call.started_ms > RECONFIG_TIMEOUT_MS:
                self.calls.pop(call_id)
                self.reconfiguring.pop(call.group, None)
        for hosted in list(self.hosted.values()):
            if not self.ring_confirmed:
                break  # an old ring must not steer the groups (see ring_confirmed)
            if hosted.replica.role is Role.LEADER:
                self._reconfigure(hosted)
            if hosted.member not in members_under(hosted.group, self.ring.future):
                self._leaving(hosted)
            elif self._stranded(hosted):
                self._retire(hosted)  # founded afresh from the ring at its next use
        if self.hosted:
            self._arm_tick()

    def _stranded(self, hosted: Hosted) -> bool:
        """A member that stores no log and whose voters are not the settled ring's primaries (it
        joined empty, or was founded from an older ring) may wait forever for a group that never
        formed. Dropping it is harmless (its vote is kept), and refounding it is safe as founding
        is (module doc of `ensembles`)."""
        return (not hosted.storage.holds_log and self.ring.settled
                and set(hosted.replica.members) != set(members_under(hosted.group,
                                                                     self.ring.owners)))

    # --- the leader's side ----------------------------------------------------------------------

    def _reconfigure(self, hosted: Hosted) -> None:
        """Move the group one member closer to the planned ring's primaries."""
        group, replica = hosted.group, hosted.replica
        if group in self.reconfiguring or not hosted.config_committed:
            return
        current = replica.members
        target = members_under(group, self.ring.future)
        missing = [m for m in target if m not in current and self._reachable(m)]
        # The leader removes itself last, so the group keeps its leader while it can.
        extra = sorted((m for m in current if m not in target), key=lambda m: m == hosted.member)
        full = len(current) >= self.config.max_members
        if extra and (len(current) > len(target) or not missing or full):
            change: AddMember | RemoveMember = RemoveMember(extra[0])
        elif missing:
            change = AddMember(missing[0])
        else:
            return
        call_id = next(self._call_ids)
        self.calls[call_id] = Call(CallKind.RECONFIG, group, hosted.member, change=change.member,
                                   removing=isinstance(change, RemoveMember),
                                   started_ms=self.now_ms)
        self.reconfiguring[group] = call_id
        self._queue.append((hosted, replica.propose(call_id, change, self.now_ms)))

    def _reconfigured(self, call: Call, result: Result) -> None:
        self.reconfiguring.pop(call.group, None)
        if not isinstance(result, ConfigApplied):
            return
        self.counters.membership_changes += 1
        if call.removing:
            self._tell_retired(call.group, call.change)

    def _tell_retired(self, group: str, member: str) -> None:
        node = member_node(member)
        if node == self.node:
            self._on_retired(EnsembleRetired(group, member))
        else:
            self._out.append(Send(node, EnsembleRetired(group, member)))

    def _on_retire_query(self, sender: str, msg: EnsembleRetireQuery) -> None:
        for (group, _), hosted in list(self.hosted.items()):
            if group != msg.group or hosted.replica.role is not Role.LEADER:
                continue
            gone = msg.member not in hosted.replica.members and hosted.config_committed
            if gone and msg.member not in members_under(group, self.ring.future):
                self._tell_retired(group, msg.member)
            return

    # --- the leaving member's side --------------------------------------------------------------

    def _leaving(self, hosted: Hosted) -> None:
        """A member the planned ring no longer has: ask the group whether its removal has
        committed; drop it at once if it stores no log and its group has gone quiet.

        No commit counted on a member without a log, and it may wait forever (founded from an
        older ring, its peers never created, it voted for itself), holding up its partition's
        handoff and with it the whole ring plan. It waits only while members of its group talk
        to it: one holding a log may need its vote (a leader elected with it whose first entry
        it never received).
        """
        quiet = self.now_ms - hosted.heard_ms >= ORPHAN_QUIET_MS
        if quiet and not hosted.storage.holds_log:
            self._retire(hosted)
            return
        query = EnsembleRetireQuery(hosted.group, hosted.member)
        asked = {member_node(m) for m in hosted.replica.members}
        asked |= {member_node(m) for m in members_under(hosted.group, self.ring.future)}
        for node in sorted(asked):
            if node == self.node:
                self._on_retire_query(self.node, query)
            else:
                self._out.append(Send(node, query))

    def _on_retired(self, msg: EnsembleRetired) -> None:
        hosted = self.hosted.get((msg.group, msg.member))
        if hosted is not None and msg.member not in members_under(msg.group, self.ring.future):
            self._retire(hosted)

    def _retire(self, hosted: Hosted) -> None:
        """The group no longer counts on this member: drop it and its state but its hard state,
        and answer what it was asked."""
        key = (hosted.group, hosted.member)
        if self.hosted.get(key) is not hosted:
            return
        del self.hosted[key]
        siblings = self._by_group[hosted.group]
        siblings.remove(hosted)
        if not siblings:
            del self._by_group[hosted.group]
        replica = hosted.replica
        hard = HardState(replica.term, replica.voted_for)
        hosted.storage.retire(hard)
        self._kept[key] = hard
        self.counters.absorb(replica.stats)
        self.counters.members_retired += 1
        for kind in TimerKind:
            self._out.append(CancelTimer(replica_timer(hosted.group, hosted.member, kind)))
        for call_id, call in list(self.calls.items()):
            if call.group == hosted.group and call.member == hosted.member:
                self._answered(call_id, self._dropped_answer(call))

    def _dropped_answer(self, call: Call) -> Result:
        """The answer to a call its member left unanswered. A write still open on a member was
        appended to its log (a refusal is answered at once) and may commit: asking another
        member would apply it twice, or fail a compare-and-set on the version it wrote itself."""
        if call.kind is CallKind.CLIENT_OP:
            op = self.ops.get(call.req_id)
            write = op is not None and op.is_write
        else:
            write = call.write
        return Indeterminate(DROPPED_WRITE) if write else NotLeader(None)
