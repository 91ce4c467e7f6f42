"""Storage backends: memory (tests, simulator) and LMDB (the durable default)."""
