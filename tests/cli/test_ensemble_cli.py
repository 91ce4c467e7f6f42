"""`sapwood ensemble status`: joining the members' views into one row per group."""

from __future__ import annotations

from typing import Any

from sapwood.cli.ensemble import merge_views


def row(group: str, member: str, role: str, term: int, last: int,
        members: tuple[str, ...] = ("0@a", "1@b", "2@c")) -> dict[str, Any]:
    return {"group": group, "member": member, "role": role, "term": term, "last_index": last,
            "commit_index": last, "members": list(members), "target_members": list(members)}


def test_the_leader_of_the_highest_term_and_each_members_lag() -> None:
    views = {
        "a": {"members": [row("g0/3", "0@a", "leader", 2, 10)]},
        "b": {"members": [row("g0/3", "1@b", "follower", 2, 7),
                          row("g0/3", "1@b-old", "leader", 1, 4)]},
        "c": None,  # did not answer
    }
    (group,) = merge_views(views)
    assert group["leader"] == "0@a" and group["term"] == 2 and group["commit_index"] == 10
    assert group["lag"] == {"0@a": 0, "1@b": 3, "2@c": None}


def test_a_group_without_a_leader_lists_the_members_it_knows() -> None:
    views = {"a": {"members": [row("g8/3", "8@a", "follower", 3, 5),
                               row("g1/3", "1@a", "candidate", 4, 2)]}}
    groups = merge_views(views)
    assert [g["group"] for g in groups] == ["g1/3", "g8/3"]
    assert all(g["leader"] is None and set(g["lag"].values()) == {None} for g in groups)
