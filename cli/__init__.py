"""The ``funcmtl`` command line (tyro): thin configs that call the library."""

from cli.main import main

__all__ = ["main"]
