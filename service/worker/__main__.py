"""``python -m service.worker``: see ``service.worker.main``."""

import sys

from service.worker.main import main

if __name__ == "__main__":
    sys.exit(main())
