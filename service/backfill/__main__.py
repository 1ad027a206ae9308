"""``python -m service.backfill``: the Ray backfill's command line."""

import sys

from service.backfill.cli import main

if __name__ == "__main__":
    sys.exit(main())
