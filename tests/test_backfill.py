"""`python -m service.backfill` for real: a Ray cluster of a head and a worker node started with
`ray start` on loopback addresses (stopped at the end), the real SmolLM2 GGUF, and the batch
CLI as the reference: the same answers for the same texts, one row per record, bad records as
the API's errors, resuming after a crash without a lost or repeated row, JSONL and Parquet in
and out, a new local Ray by default.

Ray is the ``ray`` extra: without it these tests skip, except under CI, where they fail.
"""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import free_port

try:
    import ray  # noqa: F401 (only whether it is there)
except ImportError:
    if os.environ.get("CI"):
        pytest.fail("Ray is not installed, and CI must run the Ray tests: install '.[ray]'")
    pytest.skip("Ray is not installed (pip install -e '.[ray]')", allow_module_level=True)

from service.backfill.inputs import id_text
from service.backfill.outputs import OutputFolder
from service.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).parent / "ray"
# One llama.cpp thread everywhere: results are deterministic for a given thread count, and the
# CLI's reference answers are made with the same.
ENV = {
    "ALGOSPEAK_THREADS": "1",
    "ALGOSPEAK_CONTEXT_SIZE": "1024",
    "ALGOSPEAK_MAX_TEXT_CHARS": "2000",
}
TEXTS = [
    "the character got unalived in episode 3",
    "grilled corn with lime",
    "new 🌽 drop for subscribers",
    "kys loser",
    "dm me for my spicy accountant content",
    "honestly thinking about sewer slide again tonight",
    "I'm a certified accountant, dm me for tax help",
    "got some snow for the party, hmu for a line",
]
# (input line, the id its row must carry, the error type expected or None)
CASES: list[tuple[bytes, str, str | None]] = [
    (json.dumps({"id": "a", "text": TEXTS[0]}).encode(), "a", None),
    (json.dumps(TEXTS[1]).encode(), "in.jsonl:2", None),
    (b"{not json", "in.jsonl:3", "invalid_json"),
    (json.dumps({"id": 7, "text": TEXTS[2], "source": "x"}).encode(), "7", None),
    (b"", "in.jsonl:5", "invalid_request"),
    (b'{"id": "no-text"}', "no-text", "invalid_request"),
    (b'{"id": "blank", "text": "  "}', "blank", "invalid_request"),
    (json.dumps({"id": "long", "text": "a" * 2001}).encode(), "long", "text_too_long"),
    (b'{"id": "surrogate", "text": "bad \\ud800 text"}', "surrogate", "invalid_request"),
    (json.dumps({"id": None, "text": TEXTS[3]}).encode(), "in.jsonl:10", None),
    (json.dumps({"id": [1, {"k": None}], "text": TEXTS[4]}).encode(), '[1,{"k":null}]', None),
    *[(json.dumps({"id": f"t{n}", "text": t}).encode(), f"t{n}", None)
      for n, t in enumerate(TEXTS[5:], start=5)],
]  # fmt: skip


# ----- a Ray cluster of two nodes on this machine


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: its parent and its command line."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry.name)] = (parent, command)
    return table


def stop_ray(marker: str, timeout: float = 6) -> None:
    """Stop the Ray processes whose command line names ``marker`` (the cluster's own temp
    folder) and everything they started, and nothing else: `ray stop` would stop every Ray on
    the machine."""
    table = _processes()
    ours = {pid for pid, (_, command) in table.items() if marker in command}
    ours.discard(os.getpid())
    grown = True
    while grown:
        children = {pid for pid, (parent, _) in table.items() if parent in ours} - ours
        grown = bool(children)
        ours |= children
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in ours):
            time.sleep(0.2)
        ours = {pid for pid in ours if Path(f"/proc/{pid}").exists()}
        if not ours:
            return


@dataclass(frozen=True)
class Cluster:
    """A running Ray cluster: its address, and what a driver's environment needs to join it."""

    address: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    """A Ray cluster of two nodes, a head on 127.0.0.2 and a worker on 127.0.0.3 (loopback
    addresses both: Ray turns 127.0.0.1 into the machine's network address), one CPU each,
    running this checkout's code, with a token of its own (whatever ~/.ray holds)."""
    # A short folder: Ray's Unix sockets live under it, and their paths have a length limit.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **auth, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head = [str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.2"]
    head += [f"--temp-dir={temp}", "--include-dashboard=false", f"--dashboard-port={free_port()}"]
    worker = [str(RAY), "start", f"--address=127.0.0.2:{port}", "--node-ip-address=127.0.0.3"]
    try:
        for command in (head, worker):
            # Ports that would otherwise be fixed, so the two nodes (and any other Ray on the
            # machine) do not collide.
            command += ["--num-cpus=1", "--object-store-memory=150000000"]
            command += [f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
            started = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=120)
            assert started.returncode == 0, started.stderr.decode(errors="replace")[-4000:]
        yield Cluster(f"127.0.0.2:{port}", auth)
    finally:
        stop_ray(str(temp))
        subprocess.run(["rm", "-rf", str(temp)], check=False)


# ----- running things


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    """``lines`` as a JSONL file whose last line has no newline (as editors often leave it)."""
    path.write_bytes(b"\n".join(lines))
    return path


def backfill(
    *args: object, cluster: Cluster | None = None, timeout: float = 240
) -> tuple[dict[str, Any], str]:
    """Run `python -m service.backfill ARGS` to its end, on ``cluster`` if given (else on a
    new local Ray): its summary (stdout) and its log."""
    env = {**os.environ, **ENV, **(cluster.env if cluster else {})}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "service.backfill", *map(str, args), "--quiet"]
    if cluster:
        command += ["--address", cluster.address]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def without_latency(row: dict[str, Any]) -> dict[str, Any]:
    """A row less its one field that differs between runs."""
    if "result" in row:
        row = {**row, "result": {k: v for k, v in row["result"].items() if k != "latency_ms"}}
    return row


def rows_by_id(out: Path, output_format: str) -> dict[str, dict[str, Any]]:
    rows = OutputFolder(str(out), output_format).rows()  # type: ignore[arg-type]
    by_id = {row["id"]: without_latency(row) for row in rows}
    assert len(by_id) == len(rows), "an id is in OUT twice"
    return by_id


@pytest.fixture(autouse=True)
def backfill_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def reference(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """What the batch CLI writes for CASES, as backfill rows by id."""
    folder = tmp_path_factory.mktemp("cli")
    source = write_jsonl(folder / "in.jsonl", [line for line, *_ in CASES])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENV.items():
            patch.setenv(name, value)
        command = ["classify", str(source), str(folder / "out.jsonl"), "--quiet"]
        assert cli_main([*command, "--model", str(smollm2_gguf)]) == 0
    rows = {}
    for line in (folder / "out.jsonl").read_bytes().splitlines():
        record = json.loads(line)
        row_id = id_text(record["id"]) or f"in.jsonl:{record['line']}"
        answer = {key: value for key, value in record.items() if key not in ("line", "id")}
        rows[row_id] = without_latency({"id": row_id, **answer})
    return rows


# ----- the tests


def test_a_backfill_across_two_nodes_answers_as_the_cli(
    ray_cluster: Cluster, smollm2_gguf: Path, tmp_path: Path, reference: dict[str, dict]
) -> None:
    """Two actors, one on each node, one text per batch: every record gets exactly one row,
    with the id rule's id, and each row is the CLI's answer for that record (bad ones as the
    API's error)."""
    source = write_jsonl(tmp_path / "in.jsonl", [line for line, *_ in CASES])
    out = tmp_path / "out"
    summary, _ = backfill(
        source, out, "--model", smollm2_gguf, "--actors", 2, "--batch-size", 1,
        "--rows-per-file", 2, cluster=ray_cluster,
    )  # fmt: skip

    rows = rows_by_id(out, "jsonl")
    assert sorted(rows) == sorted(row_id for _, row_id, _ in CASES)
    for _, row_id, error_type in CASES:
        if error_type is None:
            assert set(rows[row_id]) == {"id", "result"}, rows[row_id]
        else:
            assert rows[row_id]["error"]["type"] == error_type, rows[row_id]
    assert rows == reference
    assert summary["written"] == summary["rows"] == summary["distinct_ids"] == len(CASES)
    assert summary["errors"] == sum(error is not None for *_, error in CASES)
    assert summary["actors"] == 2
    assert len(summary["rows_per_node"]) == 2, summary  # both nodes classified
    assert sum(summary["rows_per_node"].values()) == len(CASES)
    assert not list(out.glob(".*")), "a temporary file was left"


def test_parquet_in_and_out_on_a_new_local_ray(
    smollm2_gguf: Path, tmp_path: Path, reference: dict[str, dict]
) -> None:
    """Without --address (nor RAY_ADDRESS) it starts its own Ray. Parquet rows with integer
    ids, a missing id, a null or empty text and columns of their own: the same answers as the
    CLI for the same texts, and typed Parquet parts that read back as the JSON rows."""
    source = tmp_path / "posts.parquet"
    table = pa.table(
        {
            "id": pa.array([1, 2, None, 4, 5], pa.int64()),
            "text": [TEXTS[0], None, TEXTS[3], "", TEXTS[1]],
            "lang": ["en"] * 5,
        }
    )
    pq.write_table(table, source)
    out = tmp_path / "out"
    summary, _ = backfill(source, out, "--model", smollm2_gguf, "--actors", 1)

    assert summary["written"] == summary["rows"] == 5
    rows = rows_by_id(out, "parquet")
    assert set(rows) == {"1", "2", "posts.parquet:3", "4", "5"}
    assert rows["1"]["result"] == reference["a"]["result"]
    assert rows["posts.parquet:3"]["result"] == reference["in.jsonl:10"]["result"]
    assert rows["5"]["result"] == reference["in.jsonl:2"]["result"]
    assert rows["2"]["error"] == {"type": "invalid_request", "message": "text: must be a string"}
    assert rows["4"]["error"] == {"type": "invalid_request", "message": "text: must not be empty"}
    (part,) = out.glob("part-*.parquet")
    schema = pq.read_schema(part)
    assert schema.names == ["id", "result", "error"]
    assert schema.field("result").type.get_field_index("scores") >= 0


def test_a_crashed_run_resumes_without_losing_or_repeating_a_row(
    ray_cluster: Cluster, smollm2_gguf: Path, tmp_path: Path
) -> None:
    """The driver is killed (SIGKILL) once some parts are written, and a write cut short is
    left behind; the rerun skips the ids already written, leaves their parts as they are,
    removes the unfinished file and writes the rest, each id once."""
    texts = [f"{TEXTS[n % len(TEXTS)]} #{n}" for n in range(24)]
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [json.dumps({"id": f"p{n}", "text": t}).encode() for n, t in enumerate(texts)],
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "service.backfill", str(source), str(out), "--quiet"]
    command += ["--address", ray_cluster.address, "--model", str(smollm2_gguf)]
    command += ["--actors", "1", "--batch-size", "1", "--rows-per-file", "1"]
    env = {**os.environ, **ENV, **ray_cluster.env}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("part-*.jsonl"))) < 3:
            assert process.poll() is None, "the backfill finished before it could be killed"
            assert time.monotonic() < deadline, "the backfill wrote nothing in time"
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no chance to clean up, as in a crash
        process.wait()
    # The dead run's actors may go on for a moment, but only the driver writes: OUT holds now
    # what it will hold when the rerun looks.
    before = {part.name: part.read_bytes() for part in out.glob("part-*.jsonl")}
    assert 3 <= len(before) < len(texts)
    (out / ".tmp-part-0123456789abcdef0123456789abcdef.jsonl").write_bytes(b'{"id": "p1')

    summary, _ = backfill(
        source, out, "--model", smollm2_gguf, "--actors", 1, "--batch-size", 4,
        "--rows-per-file", 8, cluster=ray_cluster,
    )  # fmt: skip

    assert summary["skipped"] == len(before)
    assert summary["written"] == len(texts) - len(before)
    assert summary["rows"] == summary["distinct_ids"] == len(texts)
    rows = rows_by_id(out, "jsonl")
    assert set(rows) == {f"p{n}" for n in range(len(texts))}
    assert all("result" in row for row in rows.values())
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.glob(".*"))


def test_a_finished_output_is_left_as_is_and_restart_redoes_it(
    ray_cluster: Cluster, smollm2_gguf: Path, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [line for line, *_ in CASES[:3]])
    out = tmp_path / "out"
    args = (source, out, "--model", smollm2_gguf, "--actors", 1)
    backfill(*args, cluster=ray_cluster)
    parts = {part.name: part.read_bytes() for part in out.glob("part-*")}

    again, _ = backfill(*args, cluster=ray_cluster)
    assert again["written"] == 0 and again["skipped"] == again["rows"] == 3
    assert {part.name: part.read_bytes() for part in out.glob("part-*")} == parts

    restarted, _ = backfill(*args, "--restart", cluster=ray_cluster)
    assert restarted["written"] == restarted["rows"] == 3 and restarted["skipped"] == 0
    assert not set(parts) & {part.name for part in out.glob("part-*")}


def run_main(*args: object) -> int:
    from service.backfill.cli import main

    return main([*map(str, args), "--quiet"])


def test_what_cannot_start_exits_2_before_starting_ray(
    tmp_path: Path, smollm2_gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No input, no model, an OUT of the other format or inside IN, a folder of both formats:
    each is refused with what to do, before Ray starts and before OUT is touched."""
    source = write_jsonl(tmp_path / "in.jsonl", [line for line, *_ in CASES[:2]])
    assert run_main(tmp_path / "absent.jsonl", tmp_path / "out", "--model", smollm2_gguf) == 2
    assert "absent.jsonl not found" in caplog.text

    assert run_main(source, tmp_path / "out", "--model", "/nonexistent/model.gguf") == 2
    assert "/nonexistent/model.gguf not found" in caplog.text

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "part-00.parquet").write_bytes(b"")
    assert run_main(source, mixed, "--model", smollm2_gguf) == 2
    assert "part files of another format" in caplog.text

    folder = tmp_path / "both"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"")
    (folder / "b.parquet").write_bytes(b"")
    assert run_main(folder, tmp_path / "out2", "--model", smollm2_gguf) == 2
    assert "pass --input-format" in caplog.text

    assert run_main(tmp_path / "no-such-folder", tmp_path / "out", "--model", smollm2_gguf) == 2
    assert "no-such-folder not found" in caplog.text

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_jsonl(inputs / "in.jsonl", [line for line, *_ in CASES[:2]])
    assert run_main(inputs, inputs / "out", "--model", smollm2_gguf) == 2
    assert "is inside IN" in caplog.text
    assert not (tmp_path / "out").exists() and not (inputs / "out").exists()


def test_the_bench_measures_the_cli_and_one_and_two_actors(
    ray_cluster: Cluster, smollm2_gguf: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "bench/backfill.py", "--model", str(smollm2_gguf), "--texts", "6"]
    command += ["--address", ray_cluster.address, "--json", str(out)]
    env = {**os.environ, **ENV, **ray_cluster.env}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert [run["name"] for run in report["runs"]] == ["cli", "1 actor", "2 actors"]
    for run in report["runs"]:
        assert run["texts"] == 6 and run["texts_per_s"] > 0
    assert report["runs"][0]["vs_cli"] == 1.0
    assert "texts/s" in result.stdout
