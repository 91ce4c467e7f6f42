"""Sapwood's HTTP API: Riak-compatible routes (objects, buckets, 2i, props) and admin routes."""

from sapwood.http.app import make_app

__all__ = ["make_app"]
