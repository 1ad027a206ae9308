"""``python -m training.dataset``: the CLI (see :mod:`training.dataset.cli`)."""

from training.dataset.cli import main

raise SystemExit(main())
