"""Hinted and ownership handoff: moving a partition's objects to the node that should hold them.

The sender folds the partition in bounded batches, one batch in flight; the receiver merges each
object into its own replica and acknowledges a batch only once it is durable. Ownership handoff
copies (the old owner keeps serving until the ring says otherwise); hinted handoff, for data a
node holds but does not own, deletes each sent object afterwards — but only if it is unchanged, so
a write that lands during the transfer is never lost: it is sent by a later handoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sapwood.core.backend import Backend
from sapwood.core.effects import Effect, Send, SetTimer
from sapwood.core.records import fast_init

BATCH_OBJECTS = 200
BATCH_BYTES = 1024 * 1024
MAX_CONCURRENT_TRANSFERS = 2  # outgoing, per node (Riak's transfer_limit)
ACK_TIMEOUT_MS = 10_000
HINTED_IDLE_MS = 2_000  # a fallback waits for its vnode to go quiet before handing back


class Kind(Enum):
    OWNERSHIP = "ownership"
    HINTED = "hinted"


class Phase(Enum):
    SENDING = "sending"  # a batch is in flight
    DONE = "done"
    FAILED = "failed"


@fast_init
@dataclass(frozen=True, slots=True)
class HandoffBatch:
    transfer_id: int
    sender: str
    partition: int
    seq: int
    items: list[tuple[bytes, bytes]]  # (encoded bkey, encoded object)
    last: bool


@fast_init
@dataclass(frozen=True, slots=True)
class HandoffAck:
    transfer_id: int
    partition: int
    seq: int
    receiver: str
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class TransferComplete:
    """Told to the claimant: `target` now holds everything `source` had for `partition`."""

    partition: int
    source: str
    target: str


@dataclass(slots=True)
class Transfer:
    transfer_id: int
    partition: int
    target: str
    kind: Kind
    started_ms: int
    phase: Phase = Phase.SENDING
    seq: int = 0
    cursor: bytes = b""
    in_flight: list[tuple[bytes, bytes]] = field(default_factory=list)
    in_flight_last: bool = False
    objects_sent: int = 0
    bytes_sent: int = 0

    def describe(self) -> dict[str, Any]:
        return {"partition": self.partition, "target": self.target, "kind": self.kind.value,
                "objects_sent": self.objects_sent, "bytes_sent": self.bytes_sent,
                "phase": self.phase.value}


def timer_key(transfer_id: int) -> tuple[str, int]:
    return ("handoff", transfer_id)


class HandoffSender:
    """Outgoing transfers of one node."""

    def __init__(
        self, me: str, backend: Backend, delete_unchanged: Callable[[int, bytes, bytes], None]
    ) -> None:
        self.me = me
        self.backend = backend
        self.delete_unchanged = delete_unchanged
        self.transfers: dict[int, Transfer] = {}
        self._next_id = 1
        self.completed: list[tuple[int, str, str, int]] = []  # (partition, target, kind, objects)

    def active(self) -> list[Transfer]:
        return [t for t in self.transfers.values() if t.phase is Phase.SENDING]

    def busy(self, partition: int) -> bool:
        return any(t.partition == partition for t in self.active())

    def can_start(self) -> bool:
        return len(self.active()) < MAX_CONCURRENT_TRANSFERS

    def start(self, partition: int, target: str, kind: Kind, now_ms: int) -> list[Effect]:
        transfer = Transfer(self._next_id, partition, target, kind, now_ms)
        self._next_id += 1
        self.transfers[transfer.transfer_id] = transfer
        return self._send_next(transfer, now_ms)

    def _next_batch(self, transfer: Transfer) -> tuple[list[tuple[bytes, bytes]], bool]:
        items: list[tuple[bytes, bytes]] = []
        size = 0
        fold = self.backend.fold_objects(transfer.partition, transfer.cursor)
        for key, value in fold:
            if key == transfer.cursor and transfer.seq > 0:
                continue
            if len(items) >= BATCH_OBJECTS or (items and size + len(value) > BATCH_BYTES):
                return items, False
            items.append((key, value))
            size += len(key) + len(value)
        return items, True

    def _send_next(self, transfer: Transfer, now_ms: int) -> list[Effect]:
        items, last = self._next_batch(transfer)
        transfer.seq += 1
        transfer.in_flight = items
        transfer.in_flight_last = last
        batch = HandoffBatch(transfer.transfer_id, self.me, transfer.partition, transfer.seq,
                             items, last)
        return [Send(transfer.target, batch),
                SetTimer(timer_key(transfer.transfer_id), now_ms + ACK_TIMEOUT_MS)]

    def on_ack(self, ack: HandoffAck, now_ms: int) -> tuple[list[Effect], Transfer | None]:
        """Returns effects, and the transfer when it has just finished."""
        transfer = self.transfers.get(ack.transfer_id)
        if transfer is None or transfer.phase is not Phase.SENDING or ack.seq != transfer.seq:
            return [], None
        if ack.error is not None:
            transfer.phase = Phase.FAILED
            del self.transfers[ack.transfer_id]
            return [], None
        if transfer.kind is Kind.HINTED:
            self._delete_unchanged(transfer)
        transfer.objects_sent += len(transfer.in_flight)
        transfer.bytes_sent += sum(len(k) + len(v) for k, v in transfer.in_flight)
        if transfer.in_flight:
            transfer.cursor = transfer.in_flight[-1][0]
        if not transfer.in_flight_last:
            return self._send_next(transfer, now_ms), None
        transfer.phase = Phase.DONE
        del self.transfers[ack.transfer_id]
        self.completed.append((transfer.partition, transfer.target, transfer.kind.value,
                               transfer.objects_sent))
        del self.completed[:-100]
        return [], transfer

    def _delete_unchanged(self, transfer: Transfer) -> None:
        for key, value in transfer.in_flight:
            self.delete_unchanged(transfer.partition, key, value)

    def on_timeout(self, transfer_id: int) -> None:
        """No ack in time: give up; the next handoff tick starts over (merges are idempotent)."""
        transfer = self.transfers.pop(transfer_id, None)
        if transfer is not None:
            transfer.phase = Phase.FAILED
