"""One module per command; each function takes typed arguments and returns an exit code."""
