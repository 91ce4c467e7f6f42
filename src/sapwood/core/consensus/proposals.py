"""Client proposals that are in the log but not yet answered.

A proposal is identified by the (term, index) of the entry it became. Whichever replica appended
it keeps waiting after losing leadership: when that index is applied it learns the outcome, and
if a different entry was committed there, the proposal certainly did not take effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sapwood.core.consensus.messages import Entry
from sapwood.core.consensus.results import Indeterminate, Result, Unavailable


@dataclass(frozen=True, slots=True)
class PendingProposal:
    req_id: int
    term: int
    deadline_ms: int


class ProposalTracker:
    """Pending proposals by log index, then by the term of the entry they became (after a
    leadership change, two proposals of different terms can wait on one index)."""

    __slots__ = ("_by_index", "_count")

    def __init__(self) -> None:
        self._by_index: dict[int, dict[int, PendingProposal]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, index: int, proposal: PendingProposal) -> None:
        self._by_index.setdefault(index, {})[proposal.term] = proposal
        self._count += 1

    def settle(self, entry: Entry, result: Result | None) -> list[tuple[int, Result]]:
        """Answers for the proposals waiting at `entry.index`, now that it is applied."""
        waiting = self._by_index.pop(entry.index, {})
        self._count -= len(waiting)
        answers: list[tuple[int, Result]] = []
        for term, proposal in waiting.items():
            if term == entry.term and result is not None:
                answers.append((proposal.req_id, result))
            else:
                answers.append((proposal.req_id, Unavailable(
                    "another leader's entry was committed in its place; it was not applied"
                )))
        return answers

    def expire(self, now_ms: int) -> list[tuple[int, Result]]:
        return self._take(lambda index, p: p.deadline_ms <= now_ms, "timed out")

    def drop_through(self, index: int) -> list[tuple[int, Result]]:
        """Answer proposals covered by a snapshot received from the leader: their fate is not
        visible in a snapshot."""
        return self._take(lambda i, p: i <= index, "replaced by a snapshot")

    def _take(
        self, chosen: Callable[[int, PendingProposal], bool], why: str
    ) -> list[tuple[int, Result]]:
        answers: list[tuple[int, Result]] = []
        for index in list(self._by_index):
            waiting = self._by_index[index]
            for term in [t for t, p in waiting.items() if chosen(index, p)]:
                answers.append((waiting.pop(term).req_id, _unknown(why)))
                self._count -= 1
            if not waiting:
                del self._by_index[index]
        return answers


def _unknown(why: str) -> Indeterminate:
    return Indeterminate(f"the write may or may not have been applied ({why})")
