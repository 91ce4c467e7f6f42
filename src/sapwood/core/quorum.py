"""Quorum accounting for gets and puts: when a request has succeeded, and when it cannot.

Follows riak_kv: a get needs R replies (notfound counts when notfound_ok) of which PR come from
primaries; it fails once more than N-R replies failed, or, with basic_quorum, once a majority said
notfound. A put needs W stored acks, DW durable acks and PW acks from primaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    PENDING = "pending"
    OK = "ok"
    NOTFOUND = "notfound"
    FAILED = "failed"


# Enum members as module constants: reading a member off an Enum class costs several times a
# global lookup (CPython 3.11), and a verdict is reached on every reply.
_PENDING, _OK, _NOTFOUND, _FAILED = Verdict.PENDING, Verdict.OK, Verdict.NOTFOUND, Verdict.FAILED


@dataclass(slots=True)
class GetQuorum:
    n: int
    r: int
    pr: int
    notfound_ok: bool
    basic_quorum: bool
    primaries: int
    asked: int = -1  # replicas the request went to (fewer than n when nodes are down); -1: n
    found: int = 0
    notfound: int = 0
    errors: int = 0
    primary_ok: int = 0
    primary_failed: int = 0
    reason: str = ""

    def add(self, *, found: bool, error: bool, primary: bool) -> Verdict:
        if error:
            self.errors += 1
        elif found:
            self.found += 1
        else:
            self.notfound += 1
        counted = not error and (found or self.notfound_ok)
        if primary:
            if counted:
                self.primary_ok += 1
            else:
                self.primary_failed += 1
        return self.verdict()

    @property
    def replies(self) -> int:
        return self.found + self.notfound + self.errors

    def verdict(self) -> Verdict:
        counted = self.found + (self.notfound if self.notfound_ok else 0)
        failed = self.errors + (0 if self.notfound_ok else self.notfound)
        if counted >= self.r and self.primary_ok >= self.pr:
            return _OK if self.found else _NOTFOUND
        if self.primaries < self.pr or self.primary_failed > self.primaries - self.pr:
            self.reason = f"PR-value unsatisfied: {self.primary_ok}/{self.pr}"
            return _FAILED
        majority = self.n // 2 + 1
        if self.basic_quorum and not self.notfound_ok and self.notfound >= majority:
            return _NOTFOUND
        asked = self.n if self.asked < 0 else self.asked
        if failed > asked - self.r or self.replies >= asked:
            if self.errors == 0 and self.found == 0 and self.notfound > 0:
                return _NOTFOUND
            self.reason = f"R-value unsatisfied: {counted}/{self.r}"
            return _FAILED
        return _PENDING


@dataclass(slots=True)
class PutQuorum:
    n: int
    w: int
    dw: int
    pw: int
    primaries: int
    asked: int = -1  # replicas the write went to (fewer than n when nodes are down); -1: n
    acked: set[int] = field(default_factory=set)
    durable: set[int] = field(default_factory=set)
    primary_acked: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    primary_failed: int = 0
    reason: str = ""

    def ack(self, partition: int, *, durable: bool, primary: bool) -> Verdict:
        if durable:
            self.durable.add(partition)
        self.acked.add(partition)
        if primary:
            self.primary_acked.add(partition)
        return self.verdict()

    def fail(self, partition: int, *, primary: bool) -> Verdict:
        if partition not in self.failed:
            self.failed.add(partition)
            if primary:
                self.primary_failed += 1
        return self.verdict()

    def verdict(self) -> Verdict:
        if (
            len(self.acked) >= self.w
            and len(self.durable) >= self.dw
            and len(self.primary_acked) >= self.pw
        ):
            return _OK
        possible = (self.n if self.asked < 0 else self.asked) - len(self.failed)
        if self.primaries < self.pw or self.primaries - self.primary_failed < self.pw:
            self.reason = f"PW-value unsatisfied: {len(self.primary_acked)}/{self.pw}"
            return _FAILED
        if possible < self.w:
            self.reason = f"W-value unsatisfied: {len(self.acked)}/{self.w}"
            return _FAILED
        if possible < self.dw:
            self.reason = f"DW-value unsatisfied: {len(self.durable)}/{self.dw}"
            return _FAILED
        return _PENDING

    def timeout_reason(self) -> str:
        if len(self.acked) < self.w:
            return f"W-value unsatisfied: {len(self.acked)}/{self.w} (timeout)"
        if len(self.durable) < self.dw:
            return f"DW-value unsatisfied: {len(self.durable)}/{self.dw} (timeout)"
        return f"PW-value unsatisfied: {len(self.primary_acked)}/{self.pw} (timeout)"
