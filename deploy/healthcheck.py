"""Exit 0 when the service answers 200 on a path (``/readyz`` by default), else 1.

The image's ``HEALTHCHECK`` and the compose file's healthcheck run it with the image's own
Python, so the final image needs no curl or wget::

    python deploy/healthcheck.py /readyz

It asks the port the service listens on (``ALGOSPEAK_PORT``) on the loopback address, or on
``ALGOSPEAK_HOST`` when the service is bound to one specific address.
"""

import os
import sys
import urllib.error
import urllib.request

# Binding to every address (or the default) means the loopback one answers too.
_ANY_ADDRESS = {"", "0.0.0.0", "::", "127.0.0.1", "localhost"}


def url(path: str) -> str:
    """The URL of ``path`` on the service this container runs."""
    host = os.environ.get("ALGOSPEAK_HOST", "").strip()
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    if ":" in host:
        host = f"[{host}]"
    port = os.environ.get("ALGOSPEAK_PORT", "8000").strip() or "8000"
    return f"http://{host}:{port}/{path.lstrip('/')}"


def check(path: str = "/readyz", timeout: float = 4.0) -> int:
    """0 when ``path`` answers 200 within ``timeout`` seconds, 1 otherwise (reason on stderr)."""
    target = url(path)
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        sys.stderr.write(f"{target}: {error}\n")
        return 1
    if status != 200:
        sys.stderr.write(f"{target}: HTTP {status}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(check(*sys.argv[1:2]))
