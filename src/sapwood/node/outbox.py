"""One peer's outbound side: the bounded queue of encoded frames waiting for its connection, and
the writes that empty it.

While the peer is connected, what is queued in one loop turn goes out in one write at the end of
that turn (a callback, not a task to wake per turn); the transport's dialer task steps in only to
connect and while the socket's buffer is full. A queue that is full drops (see `admits`): the
protocols above tolerate loss, and buffering without bound for a slow peer would not be safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

MAX_QUEUED_MESSAGES = 10_000  # per peer
# Per peer. An empty queue still admits one message up to MAX_FRAME_BYTES, so a single large
# object can always be sent; memory per peer stays below MAX_QUEUED_BYTES + MAX_FRAME_BYTES.
MAX_QUEUED_BYTES = 32 * 1024 * 1024
MAX_BATCH_BYTES = 1024 * 1024  # frames joined into one write


class PeerState(Enum):
    IDLE = "idle"  # nothing to send, not connected
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # the last attempt failed; waiting before the next one


@dataclass(slots=True)
class PeerOutbox:
    """Outbound side of one peer: its queue of encoded frames and its connection's fate."""

    name: str
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    state: PeerState = PeerState.IDLE
    sent: int = 0
    dropped: int = 0
    last_error: str = ""
    lost: bool = False  # the current connection is gone; set by its watcher
    signal: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None  # while connected: where `flush` writes
    flush_due: bool = False  # a flush of this turn's frames is scheduled

    def admits(self, size: int) -> bool:
        if not self.queue:
            return True
        return (len(self.queue) < MAX_QUEUED_MESSAGES
                and self.queued_bytes + size <= MAX_QUEUED_BYTES)

    def enqueue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        if self.writer is not None:
            if not self.flush_due:
                self.flush_due = True
                asyncio.get_running_loop().call_soon(self.flush)
            return
        if self.state is PeerState.IDLE:
            self.state = PeerState.CONNECTING  # its dialer wakes up on the signal
        self.signal.set()

    def flush(self) -> None:
        """Write what is queued, as far as the socket's buffer allows; the dialer task waits
        for the buffer to drain and writes the rest."""
        self.flush_due = False
        writer = self.writer
        if writer is None or self.lost:
            return  # what is queued waits for the next connection
        conn = writer.transport
        if conn.is_closing():
            # Gone before its watcher noticed (uvloop refuses writes to a closed transport).
            self.lost = True
            self.signal.set()
            return
        while self.queue and conn.get_write_buffer_size() < MAX_BATCH_BYTES:
            data, count = self.take_batch()
            conn.write(data)
            self.sent += count
        if self.queue:
            self.signal.set()

    def take_batch(self) -> tuple[bytes, int]:
        queue = self.queue
        frames = [queue.popleft()]
        size = len(frames[0])
        while queue and size + len(queue[0]) <= MAX_BATCH_BYTES:
            frame = queue.popleft()
            frames.append(frame)
            size += len(frame)
        self.queued_bytes -= size
        return (frames[0] if len(frames) == 1 else b"".join(frames)), len(frames)

    async def wait_for_signal(self) -> None:
        self.signal.clear()
        await self.signal.wait()
