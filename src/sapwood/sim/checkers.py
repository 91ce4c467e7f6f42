"""Checkers: what must hold of a run, judged from its history and its final, quiet state.

- no acknowledged write lost: every element whose add was acknowledged is in the key's final
  value, unless a delete saw it (a delete removes exactly what its read returned);
- no phantom: nothing appears that nobody wrote, and nothing a failed write carried;
- convergence: once quiet, all primary replicas of a key hold equal objects;
- sibling bound: no object ever holds a sibling that another of its siblings has seen (the
  writer read it, so its context covered it) — with dotted version vectors siblings are at most
  the truly concurrent writers — nor two siblings of one write;
- liveness: after the heal, every node serves requests within a bounded virtual time;
- last_write_wins: acknowledged adds lost are measured and reported, never a failure.

Siblings are `(writer tag, elements)` pairs (see `sapwood.sim.workload`): a writer's elements are
the union of what it read plus its own, so "b is in a's elements" means a's writer had seen b.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sapwood.sim.history import Outcome

if TYPE_CHECKING:
    from sapwood.sim.workload import OpRecord

MAX_DETAILS = 8  # violations quoted per verdict; the count covers them all

Sibling = tuple[int, frozenset[int]]


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    passed: bool
    summary: str
    details: tuple[str, ...] = ()
    informational: bool = False  # a measurement, reported but never failing a run

    def line(self) -> str:
        mark = "INFO" if self.informational else ("PASS" if self.passed else "FAIL")
        return f"{mark} {self.name}: {self.summary}"

    def __reduce__(self) -> tuple[type[Verdict], tuple[str, bool, str, tuple[str, ...], bool]]:
        # Rebuilt through __init__: a sweep's workers send verdicts back pickled, and a frozen
        # dataclass compiled by mypyc cannot be restored from its state (bench/build_compiled.py).
        return (Verdict, (self.name, self.passed, self.summary, self.details, self.informational))


@dataclass
class Observer:
    """Checks every object the clients see while the run is going on."""

    universe: dict[str, set[int]] = field(default_factory=dict)  # elements whose write was sent
    violations: list[str] = field(default_factory=list)
    phantoms: list[str] = field(default_factory=list)
    max_siblings: int = 0
    observations: int = 0
    # Writes the network delivered twice to their coordinating vnode: two write events, so two
    # siblings (or one "seen" and one not) are legitimate for them.
    duplicated: Callable[[int], bool] = lambda tag: False

    def wrote(self, key: str, element: int) -> None:
        self.universe.setdefault(key, set()).add(element)

    def observe(self, key: str, siblings: Sequence[Sibling], where: str) -> None:
        self.observations += 1
        if len(siblings) > self.max_siblings:
            self.max_siblings = len(siblings)
        known = self.universe.get(key, set())
        for _, elements in siblings:
            unknown = elements - known
            if unknown:
                self.phantoms.append(f"{key}: {where} saw elements nobody wrote: "
                                     f"{sorted(unknown)[:5]}")
        if len(siblings) > 1:
            problem = sibling_problem(siblings, self.duplicated)
            if problem:
                self.violations.append(f"{key}: {where}: {problem}")

    def listed(self, keys: Iterable[str], written: set[str], where: str) -> None:
        phantom = sorted(set(keys) - written)
        if phantom:
            self.phantoms.append(f"{where} listed keys nobody wrote: {phantom[:5]}")


def sibling_problem(
    siblings: Sequence[Sibling], duplicated: Callable[[int], bool] = lambda tag: False
) -> str:
    """Why these siblings cannot legally coexist, or "" when they can."""
    tags = [tag for tag, _ in siblings]
    repeated = {tag for tag in tags if tags.count(tag) > 1 and not duplicated(tag)}
    if repeated:
        return f"one write appears as several siblings: tags {sorted(tags)}"
    for tag, elements in siblings:
        for other, _ in siblings:
            if other != tag and other in elements and not duplicated(other):
                return (f"sibling of write {other} survives beside write {tag}, whose writer had "
                        f"seen it ({len(siblings)} siblings)")
    return ""


def union(siblings: Iterable[Sibling]) -> set[int]:
    out: set[int] = set()
    for _, elements in siblings:
        out |= elements
    return out


def _details(items: Sequence[str]) -> tuple[str, ...]:
    extra = len(items) - MAX_DETAILS
    shown = tuple(items[:MAX_DETAILS])
    return (*shown, f"... and {extra} more") if extra > 0 else shown


def lost_adds(
    ops: Sequence[OpRecord], finals: Mapping[str, set[int]], kinds: Iterable[str]
) -> tuple[int, list[str]]:
    """Acknowledged adds of `kinds` missing from their key's final value, unless a delete saw them.

    Returns (acknowledged adds checked, descriptions of the lost ones).
    """
    kinds = set(kinds)
    excused: dict[str, set[int]] = {}
    for op in ops:
        if op.kind == "delete" and op.outcome is not Outcome.FAIL:
            excused.setdefault(op.key, set()).update(op.removed)
    checked = 0
    lost = []
    for op in ops:
        if op.kind not in kinds or op.outcome is not Outcome.OK:
            continue
        checked += 1
        if op.op_id not in finals.get(op.key, set()) and op.op_id not in excused.get(op.key, ()):
            lost.append(f"{op.key}: {op.kind} of element {op.op_id} by client {op.client} via "
                        f"{op.node}, acknowledged at {op.complete_ms} ms, is gone")
    return checked, lost


def check_lost_writes(ops: Sequence[OpRecord], finals: Mapping[str, set[int]]) -> Verdict:
    checked, lost = lost_adds(ops, finals, ("add", "blind"))
    if lost:
        return Verdict("no-lost-writes", False,
                       f"{len(lost)} of {checked} acknowledged adds lost", _details(lost))
    return Verdict("no-lost-writes", True, f"all {checked} acknowledged adds present")


def measure_lww_losses(ops: Sequence[OpRecord], finals: Mapping[str, set[int]]) -> Verdict:
    checked, lost = lost_adds(ops, finals, ("lww_add",))
    share = f" ({100 * len(lost) / checked:.0f}%)" if checked else ""
    return Verdict("lww-losses", True,
                   f"{len(lost)} of {checked} acknowledged last_write_wins adds lost{share}"
                   " (expected under concurrency)", informational=True)


def check_phantoms(
    ops: Sequence[OpRecord], finals: Mapping[str, set[int]], observer: Observer,
    final_keys: Mapping[str, str],
) -> Verdict:
    """Nothing in a final value (or seen during the run) that no write carried; no failed write
    visible. `final_keys` maps each final value's key to the history key its elements belong to."""
    sent: dict[str, set[int]] = {}
    failed: set[int] = set()
    for op in ops:
        if op.kind in ("add", "blind", "lww_add"):
            if op.wrote:
                sent.setdefault(op.key, set()).add(op.op_id)
            if op.outcome is Outcome.FAIL:
                failed.add(op.op_id)
    problems = list(observer.phantoms)
    for name, elements in finals.items():
        history_key = final_keys.get(name, name)
        unknown = elements - sent.get(history_key, set())
        if unknown:
            problems.append(f"{name}: final value holds elements nobody wrote: "
                            f"{sorted(unknown)[:5]}")
        visible_failures = elements & failed
        if visible_failures:
            problems.append(f"{name}: final value holds elements of failed writes: "
                            f"{sorted(visible_failures)[:5]}")
    if problems:
        return Verdict("no-phantoms", False, f"{len(problems)} phantom observations",
                       _details(problems))
    return Verdict("no-phantoms", True,
                   f"{observer.observations} reads and {len(finals)} final values clean")


def check_siblings(observer: Observer, finals: Mapping[str, Sequence[Sibling]]) -> Verdict:
    problems = list(observer.violations)
    most = observer.max_siblings
    for key, siblings in finals.items():
        most = max(most, len(siblings))
        problem = sibling_problem(siblings, observer.duplicated) if len(siblings) > 1 else ""
        if problem:
            problems.append(f"{key} (final): {problem}")
    if problems:
        return Verdict("sibling-bound", False, f"{len(problems)} objects with obsolete siblings",
                       _details(problems))
    return Verdict("sibling-bound", True,
                   f"at most {most} siblings seen, none obsolete ({observer.observations} reads)")


def check_convergence(disagreements: Sequence[str], keys: int) -> Verdict:
    if disagreements:
        return Verdict("convergence", False,
                       f"{len(disagreements)} of {keys} keys differ across primaries",
                       _details(disagreements))
    return Verdict("convergence", True, f"all primaries of {keys} keys agree")


def check_liveness(latencies: Mapping[str, int | None], bound_ms: int) -> Verdict:
    """`latencies`: per node, virtual ms from the heal to its first successful request."""
    slow = [f"{node}: no success within {bound_ms} ms" if ms is None
            else f"{node}: first success {ms} ms after the heal"
            for node, ms in sorted(latencies.items()) if ms is None or ms > bound_ms]
    if slow:
        return Verdict("liveness", False, f"{len(slow)} nodes did not serve in time",
                       _details(slow))
    worst = max((ms for ms in latencies.values() if ms is not None), default=0)
    return Verdict("liveness", True, f"{len(latencies)} nodes served within {worst} ms of the "
                   f"heal (bound {bound_ms} ms)")


def check_final_listing(listed: Sequence[str] | None, harvest: float, live: set[str]) -> Verdict:
    if listed is None:
        return Verdict("coverage", False, "the final list-keys query failed")
    missing = sorted(live - set(listed))
    extra = sorted(set(listed) - live)
    if harvest < 1.0 or missing or extra:
        return Verdict("coverage", False,
                       f"harvest {harvest:.2f}, {len(missing)} live keys missing, "
                       f"{len(extra)} dead keys listed",
                       _details([f"missing {k}" for k in missing] + [f"extra {k}" for k in extra]))
    return Verdict("coverage", True, f"list-keys at rest returns exactly the {len(live)} live keys")
