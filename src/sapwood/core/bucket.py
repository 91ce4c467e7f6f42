"""Bucket and bucket-type properties: Riak's defaults, validation, and quorum words.

A bucket's effective properties are its type's properties overlaid with the bucket's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sapwood.core.errors import BadRequest
from sapwood.core.limits import MAX_N_VAL

DEFAULT_TYPE = "default"
QUORUM_WORDS = ("one", "quorum", "all", "default")
QUORUM_PROPS = ("r", "w", "dw", "rw", "pr", "pw")
# r, w and rw must reach at least one replica; dw, pr and pw may be 0 ("don't care").
QUORUM_MIN = {"r": 1, "w": 1, "rw": 1, "dw": 0, "pr": 0, "pw": 0}
DELETE_MODES = ("keep", "immediate")
DATATYPES = ("counter", "set", "gset", "map", "hll")
IMMUTABLE_TYPE_PROPS = ("datatype", "consistent", "write_once")
READ_ONLY_PROPS = ("name", "active", "claimant")
HLL_PRECISION_RANGE = (4, 16)

_BASE_DEFAULTS: dict[str, Any] = {
    "n_val": 3,
    "allow_mult": False,
    "last_write_wins": False,
    "r": "quorum",
    "w": "quorum",
    "dw": "quorum",
    "rw": "quorum",
    "pr": 0,
    "pw": 0,
    "notfound_ok": True,
    "basic_quorum": False,
    "delete_mode": 3000,
    "dvv_enabled": False,
    "young_vclock": 20,
    "old_vclock": 86400,
    "small_vclock": 50,
    "big_vclock": 50,
    "precommit": [],
    "postcommit": [],
    "chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"},
    "linkfun": {"mod": "riak_kv_wm_link_walker", "fun": "mapreduce_linkfun"},
    "write_once": False,
    "consistent": False,
}

_BOOL_PROPS = (
    "allow_mult", "last_write_wins", "notfound_ok", "basic_quorum", "dvv_enabled",
    "write_once", "consistent",
)
_INT_PROPS = ("young_vclock", "old_vclock", "small_vclock", "big_vclock")


def default_type_props() -> dict[str, Any]:
    """The `default` type: Riak 1.x compatible (allow_mult=false)."""
    return dict(_BASE_DEFAULTS)


def new_type_props(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Props of a newly created type: typed buckets default to allow_mult=true with dvv."""
    props = dict(_BASE_DEFAULTS)
    props.update(allow_mult=True, dvv_enabled=True)
    if overrides.get("datatype") == "hll":
        props["hll_precision"] = 14
    return validate_props(props, overrides, creating_type=True)


def quorum_value(value: Any, n_val: int, name: str, default: Any = None) -> int:
    """Turn a quorum setting (int or word) into a replica count for this n_val."""
    if value == "default":
        if default is None or default == "default":
            raise BadRequest(f"{name}: 'default' has no bucket value to fall back on")
        return quorum_value(default, n_val, name)
    if value == "one":
        return 1
    if value == "quorum":
        return n_val // 2 + 1
    if value == "all":
        return n_val
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer or one of {', '.join(QUORUM_WORDS)}; "
                         f"got {value!r}")
    return value


def parse_quorum_param(text: str, name: str) -> int | str:
    """A quorum value from a query string: a word stays a word, digits become an int."""
    text = text.strip()
    if text in QUORUM_WORDS:
        return text
    try:
        return int(text)
    except ValueError:
        raise BadRequest(
            f"{name} must be an integer or one of {', '.join(QUORUM_WORDS)}; got {text!r}"
        ) from None


def resolve_quorum(value: Any, props: Mapping[str, Any], name: str) -> int:
    """The replica count for one quorum parameter of a request, checked against n_val."""
    n_val = props["n_val"]
    count = quorum_value(value, n_val, name, default=props.get(name))
    if count < QUORUM_MIN[name]:
        raise BadRequest(f"{name} must be at least {QUORUM_MIN[name]}; got {value!r}")
    if count > n_val:
        raise BadRequest(f"{name} ({value!r}) is greater than n_val ({n_val})")
    return count


def _check_quorum_prop(name: str, value: Any) -> None:
    if value in QUORUM_WORDS:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"bucket property {name} must be a non-negative integer or one of "
                         f"{', '.join(QUORUM_WORDS)}; got {value!r}")


def _check_delete_mode(value: Any) -> None:
    if value in DELETE_MODES:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"delete_mode must be 'keep', 'immediate' or a delay in ms; got {value!r}")


def _check_prop(name: str, value: Any, props: Mapping[str, Any]) -> None:
    if name == "n_val":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_N_VAL:
            raise BadRequest(f"n_val must be an integer from 1 to {MAX_N_VAL}; got {value!r}")
    elif name in QUORUM_PROPS:
        _check_quorum_prop(name, value)
    elif name in _BOOL_PROPS:
        if not isinstance(value, bool):
            raise BadRequest(f"bucket property {name} must be true or false; got {value!r}")
    elif name in _INT_PROPS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadRequest(f"bucket property {name} must be a non-negative integer")
    elif name == "delete_mode":
        _check_delete_mode(value)
    elif name == "datatype":
        if value not in DATATYPES:
            raise BadRequest(f"datatype must be one of {', '.join(DATATYPES)}; got {value!r}")
    elif name == "hll_precision":
        lo, hi = HLL_PRECISION_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise BadRequest(f"hll_precision must be an integer from {lo} to {hi}; got {value!r}")
        if value > props.get("hll_precision", hi):
            raise BadRequest("hll_precision can only be lowered")
    elif name in ("precommit", "postcommit"):
        if not isinstance(value, list):
            raise BadRequest(f"{name} must be a list")
        if value:
            raise BadRequest(f"{name} hooks are not supported by Sapwood")


def validate_props(
    current: Mapping[str, Any],
    changes: Any,
    *,
    creating_type: bool = False,
    type_props: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply `changes` to `current` props, or raise BadRequest and change nothing.

    `type_props` is given when changing a bucket (not a type): type-level immutable props cannot be
    overridden per bucket.
    """
    if not isinstance(changes, Mapping):
        raise BadRequest("props must be a JSON object")
    result = dict(current)
    for name, value in changes.items():
        if not isinstance(name, str):
            raise BadRequest("property names must be strings")
        if name in READ_ONLY_PROPS:
            continue  # Riak clients echo these back; accept and ignore them.
        if not creating_type and name in IMMUTABLE_TYPE_PROPS and value != current.get(name):
            raise BadRequest(f"property {name} cannot be changed after the type is created")
        if (
            not creating_type
            and name == "n_val"
            and current.get("consistent")
            and value != current.get("n_val")
        ):
            raise BadRequest("n_val of a consistent bucket type cannot be changed")
        _check_prop(name, value, current)
        result[name] = value
    _check_combination(result, creating_type)
    return result


def _check_combination(props: Mapping[str, Any], creating_type: bool) -> None:
    if props.get("datatype") is not None and not props.get("allow_mult"):
        raise BadRequest("a datatype bucket type requires allow_mult=true")
    if props.get("datatype") is not None and props.get("last_write_wins"):
        raise BadRequest("a datatype bucket type cannot use last_write_wins")
    if props.get("consistent"):
        if props.get("datatype") is not None:
            raise BadRequest("data types are not supported on consistent bucket types")
        if props.get("last_write_wins"):
            raise BadRequest("last_write_wins is not supported on consistent bucket types")
    for name in QUORUM_PROPS:
        value = props.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > props["n_val"]:
            raise BadRequest(f"bucket property {name} ({value}) is greater than n_val "
                             f"({props['n_val']})")


def bucket_props(
    type_props: Mapping[str, Any], bucket_overrides: Mapping[str, Any], bucket: str
) -> dict[str, Any]:
    props = {k: v for k, v in type_props.items() if k not in ("active", "claimant")}
    props.update(bucket_overrides)
    props["name"] = bucket
    return props
