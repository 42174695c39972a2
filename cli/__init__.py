"""The ``funcmtl`` command line (tyro): thin configs that call the library."""

import warnings

# torch warns at import when numpy is absent (funcmtl needs no numpy): not the user's concern.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

from .main import main  # noqa: E402  (after the filter: this imports torch)

__all__ = ["main"]
