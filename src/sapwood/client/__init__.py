"""Sapwood's Python API: `sapwood.open()` (embedded) and `Client`/`AsyncClient` (HTTP)."""
