"""What every benchmark script shares: paths, the error type, the common load options, tool
installation, server processes, log tails, the report's tail, the results file and main()'s
error handling.

Imported as a top-level module (`from harness import ...`): the scripts run as
`python bench/<script>.py`, which puts bench/ first on sys.path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

DEFAULT_DURATION_S = 10
STARTUP_TIMEOUT_S = 30.0
MAX_KEYS = 1_000_000
MAX_VALUE_SIZE = 1 << 20
LOG_TAIL_CHARS = 2000
STOP_GRACE_S = 5.0
# Exit statuses: a system could not be measured; the benchmark itself could not run; Ctrl-C.
EXIT_UNMEASURED = 1
EXIT_FAILED = 2
EXIT_INTERRUPTED = 130


class BenchError(Exception):
    """The benchmark could not run or measure (not a slow result: those are MISS)."""


class Measured(Protocol):
    """A measured server or system: its name and why it could not be measured, if so."""

    @property
    def name(self) -> str: ...

    @property
    def error(self) -> str | None: ...


# ---------------------------------------------------------------------------- options


def add_load_arguments(
    parser: argparse.ArgumentParser, *, connections: int, threads: int, keys: int,
    per_member: bool = False,
) -> None:
    """--duration, --connections, --threads, --keys, --value-size, --startup-timeout and
    --no-install; `per_member`: one wrk per cluster member shares the connections."""
    parser.add_argument("--duration", type=int, default=DEFAULT_DURATION_S,
                        help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=connections,
                        help="in total, over every member" if per_member else None)
    parser.add_argument("--threads", type=int, default=threads,
                        help="threads of each member's wrk" if per_member else "wrk threads")
    parser.add_argument("--keys", type=int, default=keys, help="distinct keys cycled through")
    parser.add_argument("--value-size", type=int, default=256, help="value size in bytes")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S)
    parser.add_argument("--no-install", action="store_true",
                        help="never apt-get install a missing tool")


def check_load_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *, wrk_processes: int = 1,
    min_keys: int = 1, min_value_size: int = 1,
) -> None:
    """Exit with a usage error (parser.error) when add_load_arguments' options are out of range;
    every one of `wrk_processes` wrk processes needs a connection per thread."""
    if not 1 <= wrk_processes * args.threads <= args.connections:
        parser.error(f"need 1 <= {wrk_processes} x --threads <= --connections")
    if not min_keys <= args.keys <= MAX_KEYS:
        parser.error(f"--keys must be between {min_keys} and {MAX_KEYS}")
    if not min_value_size <= args.value_size <= MAX_VALUE_SIZE:
        parser.error(f"--value-size must be between {min_value_size} and {MAX_VALUE_SIZE}")
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")


# ---------------------------------------------------------------------------- tools


def find_or_install(command: str, package: str, allow_install: bool) -> str | None:
    """`command`'s path; if it is missing and allowed, as root on a Debian-like system,
    `apt-get install -y package` first (and once more after `apt-get update` if that fails)."""
    path = shutil.which(command)
    if path is not None or not allow_install:
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    print(f"{command} not found: installing it with `apt-get install -y {package}` (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        print("apt-get install failed; running `apt-get update` and trying once more")
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    return shutil.which(command)


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all bound at once, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def start_server(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    # Run Sapwood from this checkout even when it is not installed in the interpreter.
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with log_path.open("wb") as log:
        # Own session: a Ctrl-C on the terminal reaches only us, and we stop it by PID.
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM by PID, then SIGKILL after a grace period; no-op if it already exited."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# ---------------------------------------------------------------------------- logs


def log_tail(log_path: Path) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]


def log_tails(logs: Sequence[Path]) -> str:
    """The last lines of each non-empty log, each under a header naming the file."""
    return "".join(f"\n--- last lines of {log.name} ---\n{tail}"
                   for log in logs if (tail := log_tail(log)))


# ---------------------------------------------------------------------------- report


def format_ms(value: float) -> str:
    return f"{value:.2f}ms" if value < 100 else f"{value:.0f}ms"


def print_report(header: str, sections: Sequence[str], measured: Sequence[Measured]) -> None:
    """The header again (the progress lines pushed it up), the non-empty sections, and on
    stderr why each system that failed could not be measured."""
    print()
    print(header)
    for section in sections:
        if section:
            print(section)
    for system in measured:
        if system.error:
            print(f"\n[{system.name}] could not be measured: {system.error}", file=sys.stderr)


def write_results(kind: str, payload: dict[str, Any]) -> Path:
    """bench/results/<kind>-<time>.json: the time and core count, then `payload`; says where."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    stamped = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_cores": os.cpu_count(),
               **payload}
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"\nresults written to {path.relative_to(REPO_ROOT)}")
    return path


def unmeasured_status(measured: Sequence[Measured]) -> int:
    return EXIT_UNMEASURED if any(system.error for system in measured) else 0


# ---------------------------------------------------------------------------- main


def run_main(
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None,
) -> int:
    """Parse, run, and turn a BenchError or Ctrl-C into a message and an exit status."""
    # `python bench/<script>.py` from a checkout: Sapwood's own code comes from src/.
    sys.path.insert(0, str(REPO_ROOT / "src"))
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Every server and wrk process was already stopped by the finally blocks on the way out.
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
