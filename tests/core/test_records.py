"""fast_init: the same instances as the dataclass's own __init__, just built faster."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sapwood.core.effects import Send
from sapwood.core.records import fast_init


@dataclass(frozen=True, slots=True)
class Plain:
    to: str
    count: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)
    cached: bytes | None = field(default=None, compare=False, repr=False)


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:  # Plain's twin, built by fast_init
    to: str
    count: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)
    cached: bytes | None = field(default=None, compare=False, repr=False)


words = st.text(max_size=5)
arguments = st.tuples(
    words,
    st.one_of(st.none(), st.integers()),
    st.one_of(st.none(), st.tuples(words)),
    st.one_of(st.none(), st.dictionaries(words, st.integers(), max_size=2)),
)


def _call(cls: type, args: tuple[Any, ...], by_keyword: bool) -> Any:
    names = ("to", "count", "tags", "extra")
    given_args = [(n, v) for n, v in zip(names, args, strict=True) if v is not None or n == "to"]
    if by_keyword:
        return cls(**dict(given_args))
    # positionally, up to the first argument left out
    positional = []
    for name, value in zip(names, args, strict=True):
        if value is None and name != "to":
            break
        positional.append(value)
    return cls(*positional)


@given(arguments, st.booleans())
def test_builds_what_the_dataclass_init_builds(args: tuple[Any, ...], by_keyword: bool) -> None:
    plain, fast = _call(Plain, args, by_keyword), _call(Fast, args, by_keyword)
    assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
    assert repr(fast).split("(", 1)[1] == repr(plain).split("(", 1)[1]


def test_instances_stay_frozen_hashable_and_picklable() -> None:
    msg = Fast("a", 3, ("x",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.count = 4  # type: ignore[misc]
    assert msg == Fast("a", 3, ("x",)) and msg != Fast("a", 4, ("x",))
    assert pickle.loads(pickle.dumps(msg)) == msg
    assert Fast("a").extra is not Fast("a").extra  # a fresh default per instance
    assert hash(Send("n", 1)) == hash(Send("n", 1))


def test_wrong_arguments_fail_as_before() -> None:
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", nope=1)  # type: ignore[call-arg]


def test_refuses_classes_it_cannot_build() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (NoSlots, NotFrozen, Checked, KeywordOnly):
        with pytest.raises(TypeError, match="fast_init"):
            fast_init(cls)
