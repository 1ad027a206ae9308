"""Print the project's dependencies for some extras, one per line, for ``pip install -r``::

    python deploy/requirements.py serve > requirements.txt

The image installs the dependencies only and runs the service from its copied source, so the
dependency layer is rebuilt only when ``pyproject.toml`` changes, not on every code change.
Extras that name the project itself (``algospeak-moderation[serve,dev]``) are expanded.
"""

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """The core dependencies plus those of ``extras``, in order, without duplicates.

    Raises ``KeyError`` for an extra the project does not define.
    """
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    own_name = _normalized(project["name"])
    found = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise KeyError(f"no extra {extra!r} in {pyproject} (it has {', '.join(optional)})")
        for requirement in optional[extra]:
            itself = re.fullmatch(r"\s*([A-Za-z0-9._-]+)\s*\[([^\]]*)\]\s*", requirement)
            if itself and _normalized(itself[1]) == own_name:
                pending += [name.strip() for name in itself[2].split(",") if name.strip()]
            else:
                found.append(requirement)
    return list(dict.fromkeys(found))


def main(extras: list[str]) -> int:
    try:
        lines = requirements(extras)
    except KeyError as error:
        sys.stderr.write(f"{error.args[0]}\n")
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
