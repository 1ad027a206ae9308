"""The arrows point one way: each top-level package imports only those below it (so there is no
cycle), the core stays light and nothing imports the web layer."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top: a package may import the ones before it, never one after it.
LAYERS = ("algospeak", "artifacts", "service", "training", "conversion", "recipes")
PACKAGES = LAYERS


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


def package_graph() -> dict[str, set[str]]:
    """Which of our top-level packages each one imports, wherever the import sits (module
    top or inside a function)."""
    return {p: imported_packages(p) & set(LAYERS) - {p} for p in LAYERS}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle between packages, each as the path that closes it."""
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target in path:
                found.append([*path[path.index(target) :], target])
            else:
                visit(target, [*path, target])

    for start in graph:
        visit(start, [start])
    return found


def test_cycle_detection_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert not cycles({"a": {"b"}, "b": {"c"}, "c": set()})


def test_no_import_cycle_between_top_level_packages() -> None:
    assert not cycles(package_graph()), cycles(package_graph())


def test_every_package_imports_only_the_layers_below_it() -> None:
    for level, package in enumerate(LAYERS):
        upward = package_graph()[package] - set(LAYERS[:level])
        assert not upward, f"{package} imports {sorted(upward)}, which sit above it"


def test_core_imports_none_of_ours() -> None:
    assert imported_packages("algospeak") & set(PACKAGES) <= {"algospeak"}


def test_service_never_imports_training_or_conversion() -> None:
    assert not imported_packages("service") & {"training", "conversion"}


def test_nothing_outside_the_service_imports_the_web_layer() -> None:
    for package in ("algospeak", "training", "conversion"):
        web = [m for m in imported_modules(package) if m.startswith(WEB_LAYER)]
        assert not web, f"{package} imports {web}"


def test_the_scoring_algorithm_and_its_backends_load_neither_runtime_on_import() -> None:
    """llama_cpp and torch load only when a backend loads a model."""
    code = (
        "import sys, service.scoring, service.llama_backend, service.engine, training.hf_scorer;"
        "print(sorted({'torch', 'transformers', 'llama_cpp'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_importing_the_core_loads_no_heavy_module() -> None:
    code = (
        "import sys, algospeak, artifacts.bases, artifacts.manifest; algospeak.normalize('k!ll');"
        "heavy = {'fastapi', 'torch', 'transformers', 'llama_cpp', 'starlette', 'numpy'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def _importers(package: str) -> list[str]:
    """Our modules and deploy/ scripts that import the top-level ``package``, as paths."""
    importers = []
    for path in (
        path for folder in (*PACKAGES, "deploy") for path in (ROOT / folder).rglob("*.py")
    ):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(name.split(".")[0] == package for name in names):
                importers.append(path.relative_to(ROOT).as_posix())
    return importers


@pytest.mark.parametrize(
    ("package", "user"), [("redis", "service/worker/"), ("ray", "service/backfill/")]
)
def test_an_optional_extra_is_imported_only_by_its_tool(package: str, user: str) -> None:
    """redis is the queue worker's extra, Ray the backfill's: no other module imports them."""
    importers = _importers(package)
    assert importers and all(path.startswith(user) for path in importers), importers


def test_the_service_and_the_cli_run_without_the_optional_extras() -> None:
    """With redis and Ray unimportable, the app and the batch CLI still import, and the
    backfill's command says how to install Ray instead of failing with a traceback."""
    block = "import sys; sys.modules['ray'] = None; sys.modules['redis'] = None;"
    code = block + "import service.app, service.cli, service.records; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
    code = block + "from service.backfill.cli import main; sys.exit(main(['in.jsonl', 'out']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install -e '.[ray]'" in result.stderr
