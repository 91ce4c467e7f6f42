"""Runtimes that drive the core: the asyncio node and the synchronous embedded store."""
