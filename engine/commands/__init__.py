"""One module per CLI command group; each exposes ``main(settings, flags, args) -> int``."""
