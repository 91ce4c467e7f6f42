"""Admission of client proposals: shape, limits, and turning membership requests into entries."""

from __future__ import annotations

from sapwood.core.consensus.config import RaftConfig
from sapwood.core.consensus.messages import (
    ABSENT,
    AddMember,
    ClientCommand,
    Delete,
    EntryCommand,
    Get,
    Put,
    Reconfigure,
    RemoveMember,
    Version,
    command_size,
)
from sapwood.core.consensus.results import Invalid, Result, TooLarge, Unavailable


def admit(
    command: ClientCommand,
    pending: int,
    members: tuple[str, ...],
    locked: str | None,
    config: RaftConfig,
) -> EntryCommand | Result:
    """What a leader appends for `command`, or the result refusing it."""
    refusal = check_proposal(command, pending, config)
    if refusal is not None:
        return refusal
    return reconfiguration(command, members, locked, config.max_members)


def check_read(key: bytes, pending: int, config: RaftConfig) -> Result | None:
    if not isinstance(key, bytes):
        return Invalid("a key must be bytes")
    if pending >= config.max_pending_reads:
        return Unavailable(
            f"too many reads waiting ({pending}; limit max_pending_reads="
            f"{config.max_pending_reads})"
        )
    return None


def check_proposal(command: ClientCommand, pending: int, config: RaftConfig) -> Result | None:
    """Why the leader must refuse `command` outright, or None to accept it."""
    if not isinstance(command, Put | Delete | Get | AddMember | RemoveMember):
        return Invalid(f"unsupported command {type(command).__name__}")
    problem = _shape_problem(command)
    if problem is not None:
        return Invalid(problem)
    if pending >= config.max_pending_proposals:
        return Unavailable(
            f"too many proposals waiting ({pending}; limit max_pending_proposals="
            f"{config.max_pending_proposals})"
        )
    size = command_size(command)
    if size > config.max_entry_bytes:
        return TooLarge(
            f"the command takes {size} bytes (limit max_entry_bytes={config.max_entry_bytes})"
        )
    return None


def _shape_problem(command: ClientCommand) -> str | None:
    if isinstance(command, AddMember | RemoveMember):
        ok = isinstance(command.member, str) and command.member != ""
        return None if ok else "a member id must be a non-empty string"
    if not isinstance(command.key, bytes):
        return "a key must be bytes"
    if isinstance(command, Put):
        if not isinstance(command.value, bytes):
            return "a value must be bytes"
        if not (command.expected is None or command.expected == ABSENT
                or isinstance(command.expected, Version)):
            return "the expected version must be a Version, None or 'absent'"
    if isinstance(command, Delete) and not (
        command.expected is None or isinstance(command.expected, Version)
    ):
        return "the expected version of a delete must be a Version or None"
    return None


def reconfiguration(
    command: ClientCommand, members: tuple[str, ...], locked: str | None, max_members: int
) -> EntryCommand | Invalid | Unavailable:
    """The entry a command becomes; membership requests become the complete new voter set.

    One server at a time, and only when no other change is uncommitted (`locked` says why not).
    """
    if not isinstance(command, AddMember | RemoveMember):
        return command
    if locked is not None:
        return Unavailable(locked)
    current = set(members)
    if isinstance(command, AddMember):
        if command.member in current:
            return Invalid(f"{command.member} is already a member")
        if len(current) >= max_members:
            return Invalid(f"a group has at most {max_members} members (limit max_members)")
        return Reconfigure(tuple(sorted(current | {command.member})))
    if command.member not in current:
        return Invalid(f"{command.member} is not a member")
    if current == {command.member}:
        return Invalid("cannot remove the last member of a group")
    return Reconfigure(tuple(sorted(current - {command.member})))
