"""The arrows point one way: each top-level package imports only those below it (so there is no
cycle), the core stays light and nothing imports the web layer."""

import ast
import subprocess
import sys
from pathlib import Path

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


def test_only_the_queue_worker_needs_redis() -> None:
    """redis is the worker extra: no module outside service/worker imports it, so the API, the
    batch CLI and the image's serving path run without it (and importing them loads none)."""
    importers = []
    for path in (
        path for folder in (*PACKAGES, "deploy") for path in (ROOT / folder).rglob("*.py")
    ):
        relative = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(name.split(".")[0] == "redis" for name in names):
                importers.append(relative.as_posix())
    assert importers and all(path.startswith("service/worker/") for path in importers), importers
    code = "import sys, service.app, service.cli; print('redis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "False"
