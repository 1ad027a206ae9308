"""Where the project's model files live, decided here alone: not by the working directory, nor
by where the package is installed.

Everything sits under the data home: ``$ALGOSPEAK_HOME`` if set, else
``$XDG_DATA_HOME/algospeak`` (``~/.local/share/algospeak``). ``make`` sets ``ALGOSPEAK_HOME``
to the checkout, so a clone keeps its models in its own git-ignored ``models/``; the Docker
image sets it to ``/app``. Downloaded base models are cached elsewhere (``bases.default_cache``).

``python -m artifacts.locations`` prints the default model's path (the Makefile asks it).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_FILE = "algospeak.gguf"


def home() -> Path:
    """The data home (see the module's docstring), absolute."""
    if root := os.environ.get("ALGOSPEAK_HOME"):
        return Path(root).expanduser().resolve()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser().resolve() / "algospeak"


def models_dir() -> Path:
    """Built and fetched models: ``<home>/models``."""
    return home() / "models"


def default_model_dir() -> Path:
    """The default model and its manifest and report: ``<home>/models/default``."""
    return models_dir() / "default"


def default_model() -> Path:
    """The GGUF the service serves unless told otherwise."""
    return default_model_dir() / DEFAULT_MODEL_FILE


if __name__ == "__main__":
    print(default_model())  # noqa: T201 - the command's answer
