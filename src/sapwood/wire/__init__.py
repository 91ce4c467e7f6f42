"""Bytes <-> messages: msgpack encodings, length-prefixed frames and the inter-node handshake."""
