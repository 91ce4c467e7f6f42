"""Seeds the simulator found bugs with, and reference fixes for the core bugs not yet fixed.

Every seed that ever failed is kept here with what it found. The core (src/sapwood/core/) is owned
separately; until a core bug is fixed there, its fix lives in PENDING_CORE_FIXES as a small
monkeypatch, so the sweeps can keep looking for the next bug. When the real fix lands, delete its
entry here: the seeds that found it must then pass on the production code alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sapwood.sim.faults import ALL_FAULTS
from sapwood.sim.runner import RunOptions


@dataclass(frozen=True)
class Regression:
    seed: int
    options: RunOptions
    found: str  # what the seed exposed, and where it was fixed


def _all(ops: int) -> RunOptions:
    return RunOptions(ops=ops, faults=ALL_FAULTS)


# --- reference fixes for open core bugs (none open) -----------------------------------------


PENDING_CORE_FIXES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {}


def apply_pending_fixes(monkeypatch: pytest.MonkeyPatch, *, skip: tuple[str, ...] = ()) -> None:
    for name, fix in PENDING_CORE_FIXES.items():
        if name not in skip:
            fix(monkeypatch)


# --- the regression list ----------------------------------------------------------------------

_REMOVED_NODE = ("a node that completed `cluster leave` kept hinted data it could never hand off "
                 "(no member pinged it, so it thought all were down): handoff never settled "
                 "(fixed in core: members answer pings from nodes that have left)")
_DOT_REUSE = ("a fallback vnode deleted its handed-off copy, later coordinated a write to the "
              "same key and minted a dot it had already used; replicas dropped the new write as "
              "seen: acknowledged add lost [fresh-actor-after-local-delete]")
_STATE_EPOCH = ("the claimant gossiped ring epoch 5, lost it in a power loss (never synced), then "
                "made a different epoch 5: members disagree on the ring forever, primaries "
                "diverge [durable-cluster-state]")
_TRANSFER = ("a TransferComplete was lost; the partition was never handed off again and the "
             "leave never finished [resend-transfer-complete]")
_NO_REPLICA = ("a put reached a node that owns nothing and saw no member up: IndexError in "
               "PutCoordinator [refuse-put-without-replicas]")
_REQ_ID_RACE = ("sim: a read answered synchronously let the write's request id be overwritten by "
                "the read's, so a duplicated write's extra sibling was reported as a sibling "
                "explosion (fixed in sim/workload.py _request)")

REGRESSIONS: list[Regression] = [
    Regression(0, _all(2000), _REMOVED_NODE),
    Regression(5, _all(2000), _REMOVED_NODE),
    Regression(3, _all(2000), _DOT_REUSE),
    Regression(4, _all(2000), _DOT_REUSE),
    Regression(8, _all(2000), _DOT_REUSE),
    Regression(172, _all(2000), _STATE_EPOCH),
    Regression(174, _all(2000), _STATE_EPOCH),
    Regression(19, _all(2000), _TRANSFER),
    Regression(71, _all(2000), _NO_REPLICA),
    Regression(1, _all(2000), _REQ_ID_RACE),
]
