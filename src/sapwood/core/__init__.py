"""Pure protocol logic. Nothing here performs I/O: time and chance come in as arguments."""
