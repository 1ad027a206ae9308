"""Print the project's dependencies for some extras, one per line, for ``pip install -r``::

    python deploy/requirements.py serve > requirements.txt

or, with ``--lock``, the exact versions pip resolves them to today (for Python 3.11 on x86-64
Linux when run there), which the image installs as constraints so that two builds of one
commit install the same packages::

    python deploy/requirements.py --lock serve > deploy/serve.lock

The image installs the dependencies only and runs the service from its copied source, so the
dependency layer is rebuilt only when ``pyproject.toml`` changes, not on every code change.
Extras that name the project itself (``algospeak-moderation[serve,dev]``) are expanded.
"""

import json
import re
import subprocess
import sys
import tempfile
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


def lock(lines: list[str]) -> list[str]:
    """``name==version`` for every package pip would install for ``lines`` on this machine,
    dependencies included, whatever is installed already."""
    with tempfile.TemporaryDirectory() as work:
        wanted, report = Path(work) / "requirements.txt", Path(work) / "report.json"
        wanted.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        command += ["--quiet", "--report", str(report), "-r", str(wanted)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        installed = json.loads(report.read_text(encoding="utf-8"))["install"]
    pins = {_normalized(i["metadata"]["name"]): i["metadata"]["version"] for i in installed}
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def main(argv: list[str]) -> int:
    pin = "--lock" in argv
    extras = [arg for arg in argv if arg != "--lock"]
    try:
        lines = requirements(extras)
    except KeyError as error:
        sys.stderr.write(f"{error.args[0]}\n")
        return 2
    if pin:
        extras_named = ",".join(extras)
        header = f"# python deploy/requirements.py --lock {' '.join(extras)}: the versions "
        header += f"the image installs for [{extras_named}]; rerun it to update them."
        lines = [header, *lock(lines)]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
