"""Sapwood: a key-value store that grows from an embedded database into a Dynamo-style cluster."""

__version__ = "0.1.0"
