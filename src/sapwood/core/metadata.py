"""Bucket types and per-bucket properties: the metadata every request consults.

On one node this is stored in the node's backend; in a cluster the membership layer spreads it.
Changes are validated completely before anything is changed.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sapwood.core import bucket as bprops
from sapwood.core.errors import BadRequest, NotFound
from sapwood.core.limits import MAX_PROPS_BYTES, MAX_TYPE_BYTES

TYPE_PREFIX = b"type/"
EFFECTIVE_PROPS_CACHE = 10_000
BUCKET_PREFIX = b"bucket/"


class TypeStatus:
    # Final: mypyc lets code read a class-body value off the class object only when it is Final.
    CREATED: Final = "created"
    ACTIVE: Final = "active"


def check_type_name(name: str) -> None:
    if not name or len(name.encode()) > MAX_TYPE_BYTES:
        raise BadRequest(f"bucket type names must be 1 to {MAX_TYPE_BYTES} bytes")
    if any(c in name for c in "/\x00") or name != name.strip():
        raise BadRequest("bucket type names cannot contain '/', NUL or surrounding spaces")


class ClusterMetadata:
    """Types and bucket overrides, with the byte records to persist for each change."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {
            bprops.DEFAULT_TYPE: {**bprops.default_type_props(), "active": True},
        }
        self.buckets: dict[tuple[str, str], dict[str, Any]] = {}
        self._effective: dict[tuple[str, str], dict[str, Any]] = {}

    # --- persistence --------------------------------------------------------------------------

    def load(self, records: list[tuple[bytes, bytes]]) -> None:
        self._effective.clear()
        for key, value in records:
            if key.startswith(TYPE_PREFIX):
                self.types[key[len(TYPE_PREFIX):].decode()] = json.loads(value)
            elif key.startswith(BUCKET_PREFIX):
                type_name, bucket = json.loads(key[len(BUCKET_PREFIX):])
                self.buckets[(type_name, bucket)] = json.loads(value)

    @staticmethod
    def type_record(name: str, props: dict[str, Any]) -> tuple[bytes, bytes]:
        return TYPE_PREFIX + name.encode(), json.dumps(props).encode()

    @staticmethod
    def bucket_record(type_name: str, bucket: str, props: dict[str, Any]) -> tuple[bytes, bytes]:
        return BUCKET_PREFIX + json.dumps([type_name, bucket]).encode(), json.dumps(props).encode()

    # --- types --------------------------------------------------------------------------------

    def type_props(self, name: str) -> dict[str, Any]:
        props = self.types.get(name)
        if props is None:
            raise NotFound(f"unknown bucket type {name!r}")
        return props

    def active_type(self, name: str) -> dict[str, Any]:
        props = self.type_props(name)
        if not props.get("active"):
            raise NotFound(f"bucket type {name!r} is not active; run "
                           f"`sapwood bucket-type activate {name}`")
        return props

    def create_type(self, name: str, changes: Any) -> tuple[bytes, bytes]:
        self._effective.clear()
        check_type_name(name)
        if name in self.types:
            raise BadRequest(f"bucket type {name!r} already exists")
        props = bprops.new_type_props(_props_body(changes))
        props["active"] = False
        self.types[name] = props
        return self.type_record(name, props)

    def activate_type(self, name: str) -> tuple[bytes, bytes]:
        self._effective.clear()
        props = dict(self.type_props(name))
        props["active"] = True
        self.types[name] = props
        return self.type_record(name, props)

    def update_type(self, name: str, changes: Any) -> tuple[bytes, bytes]:
        self._effective.clear()
        current = self.type_props(name)
        props = bprops.validate_props(current, _props_body(changes))
        props["active"] = current.get("active", False)
        self.types[name] = props
        return self.type_record(name, props)

    def status(self, name: str) -> str:
        return TypeStatus.ACTIVE if self.type_props(name).get("active") else TypeStatus.CREATED

    # --- buckets ------------------------------------------------------------------------------

    def bucket_props(self, type_name: str, bucket: str) -> dict[str, Any]:
        """Effective props of a bucket; cached, so callers must not change the dict."""
        cached = self._effective.get((type_name, bucket))
        if cached is not None:
            return cached
        type_props = self.active_type(type_name)
        props = bprops.bucket_props(type_props, self.buckets.get((type_name, bucket), {}), bucket)
        if len(self._effective) >= EFFECTIVE_PROPS_CACHE:
            self._effective.clear()
        self._effective[(type_name, bucket)] = props
        return props

    def set_bucket_props(self, type_name: str, bucket: str, changes: Any) -> tuple[bytes, bytes]:
        self._effective.clear()
        current = self.bucket_props(type_name, bucket)
        merged = bprops.validate_props(current, _props_body(changes))
        type_props = self.active_type(type_name)
        overrides = {k: v for k, v in merged.items()
                     if k != "name" and type_props.get(k) != v}
        self.buckets[(type_name, bucket)] = overrides
        self._effective.clear()
        return self.bucket_record(type_name, bucket, overrides)

    def reset_bucket_props(self, type_name: str, bucket: str) -> tuple[bytes, bytes]:
        self._effective.clear()
        self.active_type(type_name)
        self.buckets.pop((type_name, bucket), None)
        return self.bucket_record(type_name, bucket, {})


def _props_body(body: Any) -> dict[str, Any]:
    """Accept `{"props": {...}}` (Riak's shape) and check its size."""
    if isinstance(body, (str, bytes)):
        if len(body) > MAX_PROPS_BYTES:
            raise BadRequest(f"props larger than {MAX_PROPS_BYTES} bytes")
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise BadRequest(f"props must be JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest('props must be a JSON object like {"props": {...}}')
    props = body.get("props", body)
    if not isinstance(props, dict):
        raise BadRequest('"props" must be a JSON object')
    return props
