"""The shared cluster secret that authenticates inter-node connections.

A node created without `--secret-file` writes a random one into its data directory on first start.
Nodes that should form a cluster must share it: copy that file to the other nodes, or give them
all the same `--secret-file`. The secret is the file's text with surrounding whitespace removed,
so a generated file and a hand-written one behave alike.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("sapwood.secret")

SECRET_FILE_NAME = "cluster.secret"
GENERATED_SECRET_BYTES = 32
MIN_SECRET_BYTES = 16  # shorter secrets work, with a warning
MAX_SECRET_BYTES = 4096


class SecretError(Exception):
    """The cluster secret cannot be read or created; the message says what to fix."""


def load_or_create_secret(data_dir: Path, secret_file: Path | None = None) -> bytes:
    """The secret from `secret_file` if given, else from (or newly into) `<data_dir>/cluster.secret`."""
    if secret_file is not None:
        return _read_secret(Path(secret_file))
    path = Path(data_dir) / SECRET_FILE_NAME
    if not path.exists():
        _create_secret(path)
    return _read_secret(path)


def _create_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(GENERATED_SECRET_BYTES) + "\n"
    try:
        # O_EXCL: two processes starting on one data directory must not write two secrets.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise SecretError(f"cannot create the cluster secret {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    log.info("created a new cluster secret in %s; give other nodes the same secret to let them "
             "join this node's cluster", path)


def _read_secret(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SecretError(f"cluster secret file {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"cannot read the cluster secret file {path}: {exc.strerror}") from None
    secret = raw.strip()
    if not secret:
        raise SecretError(f"cluster secret file {path} is empty")
    if len(secret) > MAX_SECRET_BYTES:
        raise SecretError(f"cluster secret file {path} is larger than {MAX_SECRET_BYTES} bytes")
    if len(secret) < MIN_SECRET_BYTES:
        log.warning("the cluster secret in %s is only %d bytes; use at least %d", path,
                    len(secret), MIN_SECRET_BYTES)
    return secret
