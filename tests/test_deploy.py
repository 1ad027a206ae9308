"""Production packaging, checked offline: the Dockerfile and .dockerignore, docker-compose.yml
against the Compose Specification, deploy/nginx.conf, deploy/kubernetes.yaml against the
Kubernetes API schemas, and the helper scripts the image runs. No Docker engine, cluster or
network is needed; `nginx -t` runs when an nginx binary is at hand (``$NGINX`` or on PATH)."""

import importlib.util
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.settings import Settings
from tests.conftest import SERVE_ARGS, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SETTING_NAMES = {f"ALGOSPEAK_{name.upper()}" for name in Settings.model_fields}
COMPILERS = {"gcc", "g++", "cc", "c++", "clang", "cpp", "build-essential", "cmake", "make"}
COMPILERS |= {"ninja-build", "gfortran"}
# The oldest Kubernetes the manifests promise to work on, and the newest the validator knows.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())


# ----- Dockerfile


@dataclass
class Stage:
    """One ``FROM`` of a Dockerfile: its base (build args substituted), name and instructions."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global build args with their defaults, and the stages in order."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, even inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = default.strip('"')
        elif instruction == "FROM":
            words = [word for word in rest.split() if not word.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m[1], ""), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((instruction, rest))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def stage_named(stages: list[Stage], name: str) -> Stage:
    found = [stage for stage in stages if stage.name == name]
    assert len(found) == 1, f"expected one stage named {name!r}"
    return found[0]


def copy_sources(stage: Stage) -> tuple[list[str], list[tuple[str, str]]]:
    """What a stage copies: paths from the build context, and (stage, path) from other stages."""
    from_context, from_stages = [], []
    for args in stage.args_of("COPY"):
        words = shlex.split(args)
        flags = dict(word[2:].split("=", 1) for word in words if word.startswith("--"))
        sources = [word for word in words if not word.startswith("--")][:-1]
        if "from" in flags:
            from_stages += [(flags["from"], source) for source in sources]
        else:
            from_context += sources
    return from_context, from_stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.args_of("ENV"):
        for word in shlex.split(args):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def test_dockerfile_builds_wheels_in_a_builder_and_serves_from_slim_python_311(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """Several stages; llama-cpp-python (the serve requirements) is compiled in a stage with
    compilers, and the final stage starts again from python:3.11-slim and takes its virtualenv."""
    _, stages = dockerfile
    assert len(stages) >= 3
    final = stages[-1]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base
    builder = stage_named(stages, "builder")
    builder_run = " ".join(builder.args_of("RUN"))
    assert COMPILERS & set(builder_run.split())
    assert "requirements.py serve" in builder_run
    assert "pip install" in builder_run
    _, from_stages = copy_sources(final)
    assert ("venv", "/opt/venv") in from_stages
    assert stage_named(stages, "venv").base == "builder"
    assert env_of(final)["PATH"].startswith("/opt/venv/bin:")


def test_final_stage_has_no_compiler_and_only_what_serving_needs(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """Nothing in the final stage installs a compiler, it is not based on a stage that has one,
    and from the build context it copies the service's code, not tests or training code."""
    _, stages = dockerfile
    final = stages[-1]
    assert final.base not in {stage.name for stage in stages}
    for run in final.args_of("RUN"):
        assert not COMPILERS & set(run.replace(";", " ").split()), run
    from_context, from_stages = copy_sources(final)
    top_level = {source.split("/")[0] for source in from_context}
    assert {"algospeak", "service"} <= top_level
    assert not top_level & {"tests", "training", "conversion", "bench", ".venv", "."}
    # Of models/, only the shipped adapter and its manifest (serving prepares the model).
    shipped = {"models/default/adapter.gguf", "models/default/manifest.json"}
    assert {source for source in from_context if source.startswith("models")} == shipped
    # The only other stages it takes files from: the virtualenv and the (optional) model.
    assert {stage for stage, _ in from_stages} <= {"venv", "model"}


def test_final_stage_runs_the_serve_command_as_non_root_with_a_readiness_healthcheck(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """CMD is the command the tests start (``python -m service``), the user is not root, the
    service listens on every address, and HEALTHCHECK asks /readyz with a copied script."""
    _, stages = dockerfile
    final = stages[-1]
    assert json.loads(final.args_of("CMD")[-1]) == ["python", *SERVE_ARGS]
    user = final.args_of("USER")[-1].split(":")[0]
    assert user not in {"root", "0", ""}
    assert env_of(final)["ALGOSPEAK_HOST"] == "0.0.0.0"
    healthcheck = final.args_of("HEALTHCHECK")[-1]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[0] == "python" and "/readyz" in command
    from_context, _ = copy_sources(final)
    workdir = final.args_of("WORKDIR")[-1]
    assert command[1] == posixpath.join(workdir, "deploy/healthcheck.py")
    assert "deploy/healthcheck.py" in from_context


def test_model_is_baked_in_only_with_the_build_arg(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """MODEL=none (the default) copies an empty folder into models/; MODEL=default copies the
    model the model-default stage prepared the way serving does (``artifacts.shipped``, no
    torch: the stage is based on the serving builder, not the trainer)."""
    global_args, stages = dockerfile
    assert global_args["MODEL"] == "none"
    model = stage_named(stages, "model")
    assert model.base == f"model-{global_args['MODEL']}"
    none = stage_named(stages, "model-none").instructions
    assert none == [("RUN", "mkdir -p /tmp/model/models")]
    default = stage_named(stages, "model-default")
    assert default.base == "builder"
    assert "python -m artifacts.shipped" in " ".join(default.args_of("RUN"))
    _, from_stages = copy_sources(stages[-1])
    assert [path for stage, path in from_stages if stage == "model"] == ["/tmp/model/"]


def test_trainer_stage_exists_and_builds_the_default_model_by_default(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """The compose file's one-shot `model` service runs the trainer stage's CMD, which retrains
    the default model into models/default (the volume) as the same non-root user."""
    _, stages = dockerfile
    trainer = stage_named(stages, "trainer")
    command = json.loads(trainer.args_of("CMD")[-1])
    assert command[:3] == ["python", "-m", "recipes.default_model"]
    assert command[command.index("--install-dir") + 1] == "models/default"
    assert trainer.args_of("USER")[-1] == stages[-1].args_of("USER")[-1]


# ----- .dockerignore


def _glob_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: ``**`` spans folders, ``*`` and ``?`` do not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def sent_to_docker(path: str, dockerignore: str) -> bool:
    """Whether Docker sends ``path`` in the build context: the last pattern matching the path
    or one of its folders decides, and ``!`` patterns bring paths back."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for line in dockerignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex = re.compile(_glob_regex(pattern))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def test_matcher_follows_docker_semantics() -> None:
    """The matcher the next test relies on: last match wins, folders exclude their contents."""
    rules = "*\n!src/\n**/__pycache__\n!src/__pycache__/keep.pyc\n"
    assert sent_to_docker("src/a.py", rules)
    assert not sent_to_docker("other/a.py", rules)
    assert not sent_to_docker("src/pkg/__pycache__/a.pyc", rules)
    assert sent_to_docker("src/__pycache__/keep.pyc", rules)
    assert sent_to_docker("anything", "# only a comment\n")


def test_dockerignore_sends_only_the_sources_the_image_copies(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """Git history, tests, virtualenvs, model builds and caches never reach the build context;
    every file the Dockerfile copies from it does."""
    rules = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    never = [
        ".git/HEAD",
        ".git/objects/ab/cdef",
        ".venv/bin/python",
        "tests/conftest.py",
        "tests/data/x.jsonl",
        "models/default/algospeak.gguf",
        "models/default-build/run/adapter_model.safetensors",
        "models/bases/smollm2-135m-instruct/model.gguf",
        "bench/classify.py",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/0.6/x",
        ".hypothesis/examples/x",
        "algospeak_moderation.egg-info/PKG-INFO",
        "service/__pycache__/app.cpython-311.pyc",
        "training/__pycache__/train.cpython-311.pyc",
        "conversion/stray.gguf",
    ]
    assert [path for path in never if sent_to_docker(path, rules)] == []
    _, stages = dockerfile
    copied = {source for stage in stages for source in copy_sources(stage)[0]}
    missing = []
    for source in sorted(copied):
        path = ROOT / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative and not sent_to_docker(relative, rules):
                missing.append(relative)
    assert missing == []


# ----- helper scripts the image runs


def run_healthcheck(path: str, port: int, host: str = "0.0.0.0") -> subprocess.CompletedProcess:
    env = {**os.environ, "ALGOSPEAK_PORT": str(port), "ALGOSPEAK_HOST": host}
    command = [sys.executable, str(DEPLOY / "healthcheck.py"), path]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def test_healthcheck_passes_only_on_200(server_url: str) -> None:
    """Against the real service without a model: /healthz passes, /readyz (503) fails, and so
    does a port nothing listens on; the container's 0.0.0.0 means the loopback address."""
    port = int(server_url.rsplit(":", 1)[1])
    assert run_healthcheck("/healthz", port).returncode == 0
    assert run_healthcheck("/healthz", port, host="127.0.0.1").returncode == 0
    not_ready = run_healthcheck("/readyz", port)
    assert not_ready.returncode == 1
    assert "503" in not_ready.stderr
    assert run_healthcheck("/healthz", free_port()).returncode == 1


def deploy_requirements():
    """deploy/requirements.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("deploy_requirements", DEPLOY / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_lists_dependencies_of_the_extras_without_the_project() -> None:
    """``serve`` is the core plus serving (llama-cpp-python, no torch); extras naming the project
    are expanded; an unknown extra is an error, not an empty list."""
    requirements = deploy_requirements().requirements
    serve = requirements(["serve"])
    names = {re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower() for line in serve}
    assert {"pyyaml", "fastapi", "llama-cpp-python", "prometheus-client"} <= names
    assert "torch" not in names
    assert "redis" not in names  # only the queue worker needs it: the worker extra
    assert any(line.startswith("redis") for line in requirements(["worker"]))
    everything = requirements(["all"])
    assert set(serve) <= set(everything)
    assert any(line.startswith("torch") for line in everything)
    assert not any(line.startswith("algospeak-moderation") for line in everything)
    assert len(everything) == len(set(everything))
    with pytest.raises(KeyError):
        requirements(["no-such-extra"])


# ----- docker-compose.yml and nginx.conf


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    """check-jsonschema's vendored copy of the official compose-spec schema accepts the file and
    rejects copies with a misspelt key and a value outside an enumeration (so it checks)."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    misspelt = tmp_path / "misspelt.yml"
    misspelt.write_text(text.replace("    healthcheck:", "    healthchek:", 1), encoding="utf-8")
    bad_value = tmp_path / "bad-value.yml"
    bad_value.write_text(text.replace("service_started", "when_ready", 1), encoding="utf-8")
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    command += ["-o", "json", str(ROOT / "docker-compose.yml"), str(misspelt), str(bad_value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    report = json.loads(result.stdout)
    assert report["parse_errors"] == []
    failed = {Path(error["filename"]).name for error in report["errors"]}
    assert failed == {"misspelt.yml", "bad-value.yml"}, report["errors"]


def test_compose_api_can_be_scaled_and_is_health_checked_on_readyz(
    compose: dict, dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    """api has no container_name and publishes no port (so --scale works), is built from the
    Dockerfile, checks /readyz, reads the default model from a volume mounted on the image's
    models folder (ALGOSPEAK_HOME/models), and every ALGOSPEAK_* variable it sets is a real
    setting."""
    api = compose["services"]["api"]
    assert "container_name" not in api
    assert "ports" not in api
    assert api["build"]["context"] == "."
    assert "/readyz" in api["healthcheck"]["test"]
    env = api["environment"]
    assert {name for name in env if name.startswith("ALGOSPEAK_")} <= SETTING_NAMES
    volume, target = api["volumes"][0].split(":")[:2]
    assert volume in compose["volumes"]
    assert "ALGOSPEAK_MODEL_PATH" not in env  # the image's default model, in the volume
    assert posixpath.join(env_of(dockerfile[1][-1])["ALGOSPEAK_HOME"], "models") == target
    # The measured layout: one single-threaded worker per CPU of the container's share.
    cpus = float(api["deploy"]["resources"]["limits"]["cpus"])
    assert int(env["ALGOSPEAK_THREADS"]) == 1
    assert int(env["ALGOSPEAK_WORKERS"]) == cpus


def test_compose_model_service_builds_into_the_same_volume_on_request(compose: dict) -> None:
    """The one-shot model service only runs with its profile, uses the trainer stage and mounts
    the volume api reads at the same place, writable."""
    api, model = compose["services"]["api"], compose["services"]["model"]
    assert model["profiles"] == ["model"]
    assert model["build"]["target"] == "trainer"
    api_volume = api["volumes"][0].split(":")[:2]
    assert model["volumes"] == [":".join(api_volume)]


def test_compose_queue_runs_redis_and_scalable_workers_from_the_api_image(
    compose: dict, dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    """redis and worker start only with the queue profile (the default stack is unchanged);
    worker is the api's image and build running `python -m service.worker`, scalable (no
    container_name, no published port), reads the model from the api's volume, reaches the
    redis service, waits for it to be healthy, is health-checked on its metrics port and gets
    time to finish the post in hand on stop; every ALGOSPEAK_* variable is a real setting."""
    services = compose["services"]
    assert all("profiles" not in services[name] for name in ("api", "lb"))
    redis, worker, api = services["redis"], services["worker"], services["api"]
    assert redis["profiles"] == worker["profiles"] == ["queue"]
    # Redis from Docker Hub unless ALGOSPEAK_REDIS_IMAGE names a local one.
    assert re.fullmatch(r"\$\{ALGOSPEAK_REDIS_IMAGE:-redis:[\w.-]+\}", redis["image"])
    assert "redis" in compose["volumes"] and redis["volumes"] == ["redis:/data"]
    assert (worker["image"], worker["build"]) == (api["image"], api["build"])
    assert worker["command"] == ["python", "-m", "service.worker"]
    assert (ROOT / "service/worker/__main__.py").is_file()
    assert "container_name" not in worker and "ports" not in worker
    env = worker["environment"]
    assert {name for name in env if name.startswith("ALGOSPEAK_")} <= SETTING_NAMES
    url = re.fullmatch(r"redis://redis:(\d+)/\d+", env["ALGOSPEAK_REDIS_URL"])
    assert url and url[1] in redis["expose"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert worker["volumes"] == api["volumes"]
    metrics_port = env["ALGOSPEAK_WORKER_METRICS_PORT"]
    assert int(metrics_port) > 0 and metrics_port in worker["expose"]
    assert env["ALGOSPEAK_HOST"] == "0.0.0.0"
    # $$ is compose's escape for $: the container's shell reads the worker's own setting.
    check = worker["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and "ALGOSPEAK_PORT=$$ALGOSPEAK_WORKER_METRICS_PORT" in check[1]
    assert check[1].endswith("deploy/healthcheck.py /metrics")
    assert nginx_seconds(worker["stop_grace_period"]) >= 10


@dataclass
class Directive:
    name: str
    args: list[str]
    children: list["Directive"] = field(default_factory=list)

    def find(self, name: str) -> list["Directive"]:
        """Every directive called ``name`` in this block, at any depth."""
        found = [child for child in self.children if child.name == name]
        for child in self.children:
            found += child.find(name)
        return found

    def arg(self, name: str) -> list[str]:
        (directive,) = self.find(name)
        return directive.args


def parse_nginx(text: str) -> Directive:
    """nginx configuration as a tree of directives (enough for the checks below)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";{}")
    lexer.whitespace_split = True
    stack = [Directive("main", [])]
    words: list[str] = []
    for token in lexer:
        if token == ";":
            stack[-1].children.append(Directive(words[0], words[1:]))
            words = []
        elif token == "{":
            block = Directive(words[0], words[1:])
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1 and not words, "unbalanced nginx configuration"
    return stack[0]


def nginx_bytes(size: str) -> int:
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()
    return int(number) * units[unit]


def nginx_seconds(time: str) -> float:
    units = {"": 1, "s": 1, "m": 60, "h": 3600}
    number, unit = re.fullmatch(r"(\d+)([smh]?)", time).groups()
    return int(number) * units[unit]


@pytest.fixture(scope="module")
def nginx() -> Directive:
    return parse_nginx((DEPLOY / "nginx.conf").read_text(encoding="utf-8"))


def test_load_balancer_publishes_8000_and_proxies_to_api(compose: dict, nginx: Directive) -> None:
    """lb starts after api, publishes host port 8000 to the port nginx listens on, mounts
    deploy/nginx.conf, and that config proxies to the api service on the api's port."""
    lb, api = compose["services"]["lb"], compose["services"]["api"]
    assert "api" in lb["depends_on"]
    # nginx from Docker Hub unless ALGOSPEAK_NGINX_IMAGE names a local one (make image-test).
    assert re.fullmatch(r"\$\{ALGOSPEAK_NGINX_IMAGE:-nginx:[\w.-]+\}", lb["image"])
    (published,) = lb["ports"]
    host_port, container_port = published.rsplit(":", 1)
    assert host_port.endswith("8000}") or host_port == "8000"
    assert nginx.arg("listen") == [container_port]
    assert any(volume.startswith("./deploy/nginx.conf:") for volume in lb["volumes"])
    (target,) = [d.args[1] for d in nginx.find("set") if d.args[0] == "$api_upstream"]
    assert target == f"api:{api['environment']['ALGOSPEAK_PORT']}"
    assert nginx.arg("proxy_pass") == ["http://$api_upstream"]


def test_nginx_re_resolves_replicas_through_dockers_dns(nginx: Directive) -> None:
    """The upstream is a variable resolved by Docker's DNS (127.0.0.11) with a short validity:
    nginx resolves a literal proxy_pass host once at start-up and would never see new replicas."""
    resolver = nginx.arg("resolver")
    assert resolver[0] == "127.0.0.11"
    valid = [arg for arg in resolver if arg.startswith("valid=")]
    assert valid and nginx_seconds(valid[0].removeprefix("valid=")) <= 30
    assert "$" in nginx.arg("proxy_pass")[0]
    assert not nginx.find("upstream")


def test_nginx_passes_request_ids_and_client_addresses(nginx: Directive) -> None:
    """The client's X-Request-ID (or a fresh one) and the client's address reach the service."""
    headers = {d.args[0].lower(): d.args[1] for d in nginx.find("proxy_set_header")}
    request_id = headers["x-request-id"]
    (mapping,) = [d for d in nginx.find("map") if d.args[1] == request_id]
    assert mapping.args[0] == "$http_x_request_id"
    assert {(d.name, *d.args) for d in mapping.children} >= {("", "$request_id")}
    assert headers["x-forwarded-for"] == "$remote_addr"
    assert headers["x-real-ip"] == "$remote_addr"


def test_nginx_limits_match_the_service(compose: dict, nginx: Directive) -> None:
    """client_max_body_size equals the service's body limit (compose's and the default);
    nginx waits longer than the service's own request timeout, so the service's 504 arrives;
    a replica that cannot be reached is skipped."""
    env = compose["services"]["api"]["environment"]
    body_limit = nginx_bytes(nginx.arg("client_max_body_size")[0])
    assert body_limit == int(env["ALGOSPEAK_MAX_BODY_BYTES"]) == Settings().max_body_bytes
    read_timeout = nginx_seconds(nginx.arg("proxy_read_timeout")[0])
    assert read_timeout > float(env["ALGOSPEAK_REQUEST_TIMEOUT_S"])
    assert nginx_seconds(nginx.arg("proxy_connect_timeout")[0]) <= 10
    # A timed-out connection (a killed replica) is retried, a timed-out answer never is: the
    # retry window closes long before the read timeout.
    assert "timeout" in nginx.arg("proxy_next_upstream")
    assert nginx_seconds(nginx.arg("proxy_next_upstream_timeout")[0]) < read_timeout


def test_nginx_configuration_is_accepted_by_nginx(tmp_path: Path) -> None:
    """`nginx -t` on the file inside a minimal main configuration, as the nginx image has."""
    binary = os.environ.get("NGINX") or shutil.which("nginx")
    if not binary:
        pytest.skip("no nginx binary (set NGINX=/path/to/nginx to run this check)")
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"error_log stderr;\npid {tmp_path / 'nginx.pid'};\nevents {{}}\nhttp {{\n"
        f"    client_body_temp_path {temp['body']};\n    proxy_temp_path {temp['proxy']};\n"
        f"    fastcgi_temp_path {temp['fastcgi']};\n    uwsgi_temp_path {temp['uwsgi']};\n"
        f"    scgi_temp_path {temp['scgi']};\n    include {DEPLOY / 'nginx.conf'};\n}}\n",
        encoding="utf-8",
    )
    command = [binary, "-t", "-p", str(tmp_path), "-c", str(main), "-e", "stderr"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# ----- Kubernetes


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    documents = yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text(encoding="utf-8"))
    return {document["kind"]: document for document in documents if document}


def test_kubernetes_manifests_validate_strictly(manifests: dict[str, dict]) -> None:
    """Every resource passes the API schema, rejecting unknown fields, on the oldest and newest
    supported Kubernetes; a misspelt probe field is rejected (the validation has teeth)."""
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(manifests)
    for version in K8S_VERSIONS:
        for resource in manifests.values():
            kubernetes_validate.validate(resource, version, strict=True)
    broken = json.loads(json.dumps(manifests["Deployment"]))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def the_container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_probes_ports_and_settings(manifests: dict[str, dict]) -> None:
    """Readiness asks /readyz, liveness and startup /healthz, on the container port, which is the
    ALGOSPEAK_PORT it sets; the container runs the image's own command; every ALGOSPEAK_*
    variable is a real setting."""
    container = the_container(manifests["Deployment"])
    (port,) = container["ports"]
    env = {item["name"]: item for item in container["env"]}
    assert port["containerPort"] == int(env["ALGOSPEAK_PORT"]["value"])
    assert env["ALGOSPEAK_HOST"]["value"] == "0.0.0.0"
    probes = {kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in (*probes.values(), container["startupProbe"]["httpGet"]):
        assert probe["port"] in {port["name"], port["containerPort"]}
    assert "command" not in container and "args" not in container
    assert set(env) - {"FORWARDED_ALLOW_IPS"} <= SETTING_NAMES


def test_deployment_is_locked_down_and_reads_keys_from_a_secret(
    manifests: dict[str, dict], dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    """Non-root (the image's own user), no privilege escalation, read-only root filesystem, CPU
    and memory requests and limits, threads from the CPU limit, API keys from a Secret."""
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = the_container(manifests["Deployment"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    image_user = dockerfile[1][-1].args_of("USER")[-1].split(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == image_user
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    env = {item["name"]: item for item in container["env"]}
    assert env["ALGOSPEAK_WORKERS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert env["ALGOSPEAK_THREADS"]["value"] == "1"
    assert "secretKeyRef" in env["ALGOSPEAK_API_KEYS"]["valueFrom"]
    assert "value" not in env["ALGOSPEAK_API_KEYS"]


def test_service_and_autoscaler_target_the_deployment(manifests: dict[str, dict]) -> None:
    """The Service selects the Deployment's pods on the named container port; the autoscaler
    (autoscaling/v2) scales that Deployment on CPU, which works because CPU is requested."""
    deployment, service = manifests["Deployment"], manifests["Service"]
    hpa = manifests["HorizontalPodAutoscaler"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {port["name"] for port in the_container(deployment)["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in the_container(deployment)["resources"]["requests"]


# ----- what the image installs, and the offline build


def test_the_dockerfile_pulls_no_build_frontend() -> None:
    """A `# syntax=` line makes BuildKit pull a frontend image from Docker Hub, which fails on
    an offline machine; nothing in the Dockerfile needs one."""
    assert not re.search(r"(?im)^#\s*syntax\s*=", (ROOT / "Dockerfile").read_text())


def test_the_image_installs_the_locked_versions(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """The builder installs the serve and worker requirements (the image runs the API and the
    queue worker) under deploy/serve.lock, which pins one version of every package, each inside
    what pyproject.toml allows."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    builder_run = " ".join(stage_named(dockerfile[1], "builder").args_of("RUN"))
    assert "requirements.py serve worker >" in builder_run
    assert "-c deploy/serve.lock" in builder_run
    lines = (DEPLOY / "serve.lock").read_text(encoding="utf-8").splitlines()
    pins = {}
    for line in (line for line in lines if line and not line.startswith("#")):
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version
    for line in deploy_requirements().requirements(["serve", "worker"]):
        requirement = Requirement(line)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned and requirement.specifier.contains(pinned, prereleases=True), line


@pytest.mark.parametrize("script", ["offline-base.sh", "image-test.sh"])
def test_the_docker_scripts_parse(script: str) -> None:
    """`make image-test` runs them for real (.ci/run); here only that bash can read them."""
    subprocess.run(["bash", "-n", str(DEPLOY / script)], check=True, timeout=30)


# ----- the backfill on a Ray cluster (KubeRay)


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_COUNT = {"type": "integer", "minimum": 0}
# A PodTemplateSpec: each is checked against the Kubernetes API's own schema instead.
_POD_TEMPLATE = {"type": "object"}
# The fields of KubeRay's ray.io/v1 RayJob that the example uses, with the types and values its
# CRD gives them. Anything else is refused: the API server would drop an unknown (misspelt)
# field without a word, so it is caught here.
RAYJOB_SCHEMA = _object(
    {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": {"type": "object"},
        "spec": _object(
            {
                "entrypoint": {"type": "string"},
                "submissionMode": {
                    "enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]
                },
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "ttlSecondsAfterFinished": _COUNT,
                "activeDeadlineSeconds": _COUNT,
                "backoffLimit": _COUNT,
                "rayClusterSpec": _object(
                    {
                        "rayVersion": {"type": "string"},
                        "headGroupSpec": _object(
                            {"rayStartParams": _STRING_MAP, "template": _POD_TEMPLATE},
                            required=("template",),
                        ),
                        "workerGroupSpecs": {
                            "type": "array",
                            "items": _object(
                                {
                                    "groupName": {"type": "string"},
                                    "replicas": _COUNT,
                                    "minReplicas": _COUNT,
                                    "maxReplicas": _COUNT,
                                    "rayStartParams": _STRING_MAP,
                                    "template": _POD_TEMPLATE,
                                },
                                required=("groupName", "template"),
                            ),
                        },
                    },
                    required=("headGroupSpec",),
                ),
            },
            required=("entrypoint", "rayClusterSpec"),
        ),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
)


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load((DEPLOY / "kuberay-backfill.yaml").read_text(encoding="utf-8"))


def ray_groups(rayjob: dict) -> list[dict]:
    """The head group, then the worker groups."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def validate_rayjob(rayjob: dict, version: str) -> None:
    """The RayJob's own fields against RAYJOB_SCHEMA, its pod templates against Kubernetes'."""
    import jsonschema

    jsonschema.validate(rayjob, RAYJOB_SCHEMA)
    for group in ray_groups(rayjob):
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "ray"}}
        kubernetes_validate.validate({**template, "template": group["template"]}, version, True)


def test_kuberay_backfill_validates_strictly(rayjob: dict) -> None:
    """The RayJob passes KubeRay's schema for its fields and its pod templates pass the
    Kubernetes API schema, unknown fields refused, on the oldest and newest supported
    Kubernetes; a misspelt field in either is refused (the validation has teeth)."""
    import jsonschema

    for version in K8S_VERSIONS:
        validate_rayjob(rayjob, version)
    misspelt = json.loads(json.dumps(rayjob))
    misspelt["spec"]["shutdownAfterJobFinish"] = misspelt["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(jsonschema.ValidationError):
        validate_rayjob(misspelt, K8S_VERSIONS[0])
    broken = json.loads(json.dumps(rayjob))
    container = broken["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    container["containers"][0]["resource"] = container["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_rayjob(broken, K8S_VERSIONS[0])


def test_kuberay_backfill_runs_the_backfill_on_the_workers(
    rayjob: dict, dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    """The entrypoint is `python -m service.backfill` with arguments its parser accepts and no
    --address (the job's RAY_ADDRESS names the cluster); the head reserves no CPU, each
    worker's CPUs hold whole actors and match its container's limit; every ALGOSPEAK_* variable
    is a real setting; the cluster is removed after the job; every pod runs the backfill image
    as the serving image's non-root user, with shared memory for Ray's object store."""
    from service.backfill.cli import parser

    command = shlex.split(rayjob["spec"]["entrypoint"])
    assert command[:3] == ["python", "-m", "service.backfill"]
    args = parser().parse_args(command[3:])
    assert args.address is None
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True
    head, *workers = ray_groups(rayjob)
    assert head["rayStartParams"]["num-cpus"] == "0"
    cpus_per_actor = args.cpus_per_actor or args.threads_per_actor
    image_user = dockerfile[1][-1].args_of("USER")[-1].split(":")[0]
    for group in (head, *workers):
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"].rsplit("/", 1)[-1].startswith("algospeak-backfill:")
        assert str(pod["securityContext"]["runAsUser"]) == image_user
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        names = {item["name"] for item in container.get("env", [])}
        assert {name for name in names if name.startswith("ALGOSPEAK_")} <= SETTING_NAMES
        shm = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert shm and any(v["name"] == shm[0]["name"] for v in pod["volumes"])
    for group in workers:
        (container,) = group["template"]["spec"]["containers"]
        cpus = int(group["rayStartParams"]["num-cpus"])
        assert str(cpus) == container["resources"]["limits"]["cpu"]
        assert cpus % cpus_per_actor == 0 and cpus >= cpus_per_actor


def test_the_backfill_image_adds_the_manifests_ray_to_the_serving_image(rayjob: dict) -> None:
    """deploy/backfill.Dockerfile starts from the serving image with the model baked in, installs
    the Ray the RayJob names (inside what the ray extra allows, with what KubeRay needs) into
    the image's virtualenv, and runs as the serving image's user again."""
    from packaging.requirements import Requirement

    global_args, stages = parse_dockerfile((DEPLOY / "backfill.Dockerfile").read_text())
    (stage,) = stages
    assert stage.base.endswith(":with-model")
    version = dict(arg.split("=", 1) for arg in stage.args_of("ARG"))["RAY_VERSION"]
    assert version == rayjob["spec"]["rayClusterSpec"]["rayVersion"]
    run = " ".join(stage.args_of("RUN"))
    assert '"ray[default,data]==${RAY_VERSION}"' in run
    assert "--python /opt/venv/bin/python" in run
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (extra,) = pyproject["project"]["optional-dependencies"]["ray"]
    assert Requirement(extra).specifier.contains(version)
    assert stage.args_of("USER")[-1] == "10001:10001"
    assert "IMAGE" in global_args
