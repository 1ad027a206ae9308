"""The arrows point one way: the core stays light and nothing imports the web layer."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("algospeak", "service", "training", "conversion")


WEB_LAYER = ("fastapi", "starlette", "uvicorn", "service.app", "service.routes", "service.schemas")
WEB_LAYER += ("service.dependencies", "service.errors")


def imported_modules(package: str) -> set[str]:
    """Dotted names of every module imported anywhere in ``package``."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def imported_packages(package: str) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(package)}


def test_core_imports_none_of_ours() -> None:
    assert imported_packages("algospeak") & set(PACKAGES) <= {"algospeak"}


def test_service_never_imports_training_or_conversion() -> None:
    assert not imported_packages("service") & {"training", "conversion"}


def test_nothing_outside_the_service_imports_the_web_layer() -> None:
    for package in ("algospeak", "training", "conversion"):
        web = [m for m in imported_modules(package) if m.startswith(WEB_LAYER)]
        assert not web, f"{package} imports {web}"


def test_importing_the_core_loads_no_heavy_module() -> None:
    code = (
        "import sys, algospeak; algospeak.normalize('k!ll');"
        "heavy = {'fastapi', 'torch', 'transformers', 'llama_cpp', 'starlette', 'numpy'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
