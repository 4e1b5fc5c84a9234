"""Importable test helpers: isolated git environments, scratch repos, tiny checkpoints."""
