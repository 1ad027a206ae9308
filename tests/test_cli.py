"""`python -m service.cli classify` on the real SmolLM2 GGUF: one output line per input line, in
order, each what the API answers for the same text; resuming after a kill; refusing an OUT that
is not this input's."""

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.classifier import FETCH_HINT
from service.cli import main
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# One thread: on a busy shared machine llama.cpp's threads wait on each other (2 threads can be
# ten times slower than 1), and results are deterministic for a given thread count.
ENV = {
    "ALGOSPEAK_THREADS": "1",
    "ALGOSPEAK_CONTEXT_SIZE": "1024",
    "ALGOSPEAK_MAX_TEXT_CHARS": "2000",
}

# (input line, its id, the text it sends to the API or None, the error type expected or None)
CASES: list[tuple[bytes, object, str | None, str | None]] = [
    (b'{"id": "a", "text": "the character got unalived in episode 3"}', "a",
     "the character got unalived in episode 3", None),
    (b'"grilled corn with lime"', None, "grilled corn with lime", None),
    (b"{not json", None, None, "invalid_json"),
    ('{"id": 7, "text": "new 🌽 drop for subscribers", "source": "x"}'.encode(), 7,
     "new 🌽 drop for subscribers", None),
    (b"", None, None, "invalid_request"),
    (b"\xff\xfe not utf-8", None, None, "invalid_request"),
    (b'{"id": "no-text"}', "no-text", None, "invalid_request"),
    (b'{"id": "number", "text": 42}', "number", None, "invalid_request"),
    (b"[1, 2]", None, None, "invalid_request"),
    (b'{"id": "blank", "text": "  "}', "blank", "  ", "invalid_request"),
    (json.dumps({"id": "long", "text": "a" * 2001}).encode(), "long", "a" * 2001, "text_too_long"),
    (b'{"id": "surrogate", "text": "bad \\ud800 text"}', "surrogate", "bad \ud800 text",
     "invalid_request"),
    # Under the character limit, over the model's context: the engine's InputTooLongError.
    (json.dumps({"id": "context", "text": "漢" * 1500}).encode(), "context", "漢" * 1500,
     "text_too_long"),
    (b'{"id": "b", "text": "kys loser"}', "b", "kys loser", None),
    (b'{"id": [1, {"k": null}], "text": "dm me for my spicy accountant content"}',
     [1, {"k": None}], "dm me for my spicy accountant content", None),
]  # fmt: skip


def write_input(path: Path, lines: list[bytes]) -> Path:
    """``lines`` as a JSONL file whose last line has no newline (as editors often leave it)."""
    path.write_bytes(b"\n".join(lines))
    return path


def read_output(path: Path) -> list[dict]:
    """OUT's records, latency (the one field that varies between runs) left out."""
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    for record in records:
        if "result" in record:
            record["result"].pop("latency_ms")
    return records


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def classify(*args: str | Path) -> int:
    return main(["classify", *map(str, args), "--quiet"])


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def reference(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of one uninterrupted run over CASES."""
    folder = tmp_path_factory.mktemp("reference")
    source = write_input(folder / "in.jsonl", [line for line, *_ in CASES])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENV.items():
            patch.setenv(name, value)
        assert classify(source, folder / "out.jsonl", "--model", smollm2_gguf) == 0
    return folder / "out.jsonl"


@pytest.fixture(scope="module")
def api(smollm2_gguf: Path) -> Iterator[TestClient]:
    """The API on the same model and settings as the CLI runs."""
    settings = Settings(model_path=smollm2_gguf, threads=1, context_size=1024, max_text_chars=2000)
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_line_gets_one_output_line_in_order(reference: Path, api: TestClient) -> None:
    records = read_output(reference)
    assert [r["line"] for r in records] == list(range(1, len(CASES) + 1))
    assert [r["id"] for r in records] == [item_id for _, item_id, *_ in CASES]
    for record, (line, _, text, error_type) in zip(records, CASES, strict=True):
        if error_type is not None:
            assert record["error"]["type"] == error_type, line
            assert set(record) == {"line", "id", "error"}
        else:
            assert set(record) == {"line", "id", "result"}
        if text is None:
            continue
        body = json.dumps({"text": text}).encode()  # lone surrogates stay \u escapes
        answer = api.post("/classify", content=body, headers={"content-type": "application/json"})
        expected = answer.json()
        if answer.status_code == 200:
            expected.pop("latency_ms")
            assert record["result"] == expected, line
        else:
            assert record["error"] == expected["error"], line


def test_explain_adds_the_same_explanation_as_the_api(
    tmp_path: Path, smollm2_gguf: Path, api: TestClient
) -> None:
    texts = ["time to unalive myself", "grilled corn with lime"]
    source = write_input(tmp_path / "in.jsonl", [json.dumps(t).encode() for t in texts])
    out = tmp_path / "out.jsonl"
    assert classify(source, out, "--model", smollm2_gguf, "--explain", "true") == 0
    for record, text in zip(read_output(out), texts, strict=True):
        expected = api.post("/classify", json={"text": text, "explain": True}).json()
        assert record["result"]["explanation"] == expected["explanation"]
        assert record["result"]["explanation"]["summary"]


def test_a_killed_run_resumes_without_redoing_lines(
    tmp_path: Path, smollm2_gguf: Path, reference: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", [line for line, *_ in CASES])
    target = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "service.cli", "classify", str(source), str(target)]
    command += ["--model", str(smollm2_gguf)]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: complete_lines(target) >= 2, process)
    finally:
        process.kill()  # SIGKILL: no chance to clean up, as in a crash
        process.wait()
    done = complete_lines(target)
    assert 2 <= done < len(CASES)
    with target.open("ab") as out:
        out.write(b'{"line": 99, "id": "torn')  # a write cut short by the crash

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)

    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming after {done} lines" in rerun.stderr
    assert f"done: {len(CASES) - done} lines written" in rerun.stderr
    assert f"{done} skipped" in rerun.stderr
    assert read_output(target) == read_output(reference)


def wait_until(
    condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the CLI finished before it could be killed"
        assert time.monotonic() < deadline, "the CLI wrote nothing in time"
        time.sleep(0.02)


def test_a_finished_output_is_left_as_is(
    tmp_path: Path, smollm2_gguf: Path, reference: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source = write_input(tmp_path / "in.jsonl", [line for line, *_ in CASES])
    target = Path(shutil.copy(reference, tmp_path / "out.jsonl"))

    assert classify(source, target, "--model", smollm2_gguf) == 0

    assert target.read_bytes() == reference.read_bytes()
    assert f"resuming after {len(CASES)} lines" in caplog.text
    assert "done: 0 lines written" in caplog.text


def test_restart_overwrites(tmp_path: Path, smollm2_gguf: Path, reference: Path) -> None:
    source = write_input(tmp_path / "in.jsonl", [line for line, *_ in CASES[:3]])
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"not an output line\n" * 5)

    assert classify(source, target, "--model", smollm2_gguf, "--restart") == 0

    assert read_output(target) == read_output(reference)[:3]


def other_input(folder: Path, reference: Path) -> tuple[Path, bytes]:
    """Three lines whose ids differ from CASES', with the first two lines of CASES' output."""
    lines = [json.dumps({"id": f"other-{n}", "text": "hello"}).encode() for n in range(3)]
    return write_input(folder / "other.jsonl", lines), b"".join(
        reference.open("rb").readlines()[:2]
    )


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        # OUT of all CASES, IN of the first three.
        (lambda f, r: (write_input(f / "in.jsonl", [c[0] for c in CASES[:3]]), r.read_bytes()),
         "more lines than"),
        # OUT of another input: the ids differ.
        (other_input, "does not belong"),
        # Lines that are not this tool's, or not numbered from 1.
        (lambda f, r: (write_input(f / "in.jsonl", [c[0] for c in CASES]), b"hello\n"),
         "not an output line"),
        (lambda f, r: (write_input(f / "in.jsonl", [c[0] for c in CASES]),
                       b"".join(r.open("rb").readlines()[1:3])),
         "for line 2"),
    ],
)  # fmt: skip
def test_an_output_of_another_input_is_refused(
    tmp_path: Path,
    reference: Path,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[Path, Path], tuple[Path, bytes]],
    needle: str,
) -> None:
    source, existing = make(tmp_path, reference)
    target = tmp_path / "out.jsonl"
    target.write_bytes(existing)

    # No usable model: the refusal comes before the model is loaded.
    assert classify(source, target, "--model", "/nonexistent/model.gguf") == 2

    assert target.read_bytes() == existing
    assert needle in caplog.text
    assert "--restart" in caplog.text


def test_a_missing_model_exits_2_with_the_fetch_hint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_input(tmp_path / "in.jsonl", [line for line, *_ in CASES[:2]])
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"an earlier run's output\n")

    assert classify(source, target, "--model", "/nonexistent/model.gguf", "--restart") == 2

    assert "/nonexistent/model.gguf not found" in caplog.text
    assert FETCH_HINT in caplog.text
    assert target.read_bytes() == b"an earlier run's output\n"  # --restart wiped nothing


def test_a_missing_input_exits_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert classify(tmp_path / "absent.jsonl", tmp_path / "out.jsonl") == 2
    assert "absent.jsonl not found" in caplog.text
    assert not (tmp_path / "out.jsonl").exists()
