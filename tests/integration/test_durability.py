"""kill -9 under a write load: every write that had a 2xx answer is there after the restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

WRITERS = 8
LOAD_BEFORE_KILL_S = 1.5
TEXT = {"Content-Type": "text/plain"}


def _writer(url: str, prefix: str, acked: dict[str, bytes], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=5.0) as client:
        n = 0
        while not stop.is_set():
            key, value = f"{prefix}-{n}", f"value of {prefix}-{n}".encode()
            n += 1
            try:
                response = client.put(f"/buckets/durable/keys/{key}", content=value, headers=TEXT)
            except httpx.HTTPError:
                continue  # the node died mid-request: not acknowledged, nothing promised
            if response.status_code == 204:
                acked[key] = value


@pytest.mark.parametrize("sync", ["commit", "fsync"])
def test_kill9_under_write_load_loses_no_acknowledged_write(
    node_factory: Callable[..., Any], sync: str
) -> None:
    node = node_factory(args=["--sync", sync, "--log-level", "warning"])
    acked: dict[str, bytes] = {}
    for cycle in range(2):
        stop = threading.Event()
        writers = [
            threading.Thread(target=_writer, args=(node.url, f"c{cycle}w{i}", acked, stop))
            for i in range(WRITERS)
        ]
        for thread in writers:
            thread.start()
        time.sleep(LOAD_BEFORE_KILL_S)
        node.kill9()  # while the writers are mid-request
        stop.set()
        for thread in writers:
            thread.join()
        node.start()
    assert len(acked) > WRITERS * 2, "the load never got going"
    missing = []
    with httpx.Client(base_url=node.url, timeout=10.0) as client:
        for key, value in acked.items():
            response = client.get(f"/buckets/durable/keys/{key}")
            if response.status_code != 200 or response.content != value:
                missing.append((key, response.status_code))
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged writes lost"
