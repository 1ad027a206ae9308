"""The one error type of the conversion steps, and the translation of a full disk into it."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ConversionError(RuntimeError):
    """A conversion step cannot go on; the message says what was wrong and what to do."""


@contextmanager
def disk_space(target: Path) -> Iterator[None]:
    """Turn "no space left on device" while writing ``target`` into a ConversionError that
    says so (a bare OSError from deep inside torch or safetensors does not say where)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ConversionError(
                f"the disk is full while writing {target}: free some space or write the output "
                "to another disk (the partial output was removed)"
            ) from exc
        raise
