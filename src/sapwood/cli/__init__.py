"""The `sapwood` command line."""
