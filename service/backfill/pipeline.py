"""A backfill as one Ray Data pipeline: read IN, skip what OUT holds, classify, write parts.

    read (tasks)  ->  classify (a fixed pool of actors, one model each)  ->  write (the driver)

Reading parses and checks every record (service/backfill/inputs.py) and drops the ids that
OUT's complete parts already hold, so a rerun after a crash classifies only what is missing.
The actors (service/backfill/actor.py) reserve ``cpus_per_actor`` CPUs each; reads reserve
none, since they cost little next to the model, so N actors can use every CPU of the cluster.

The driver writes the parts (service/backfill/outputs.py), each atomically, as the actors'
rows stream in. Rows are small next to what they cost to compute, and writing in the driver
means that once it is gone nothing more is written: after a crash the actors of the dead run
may go on for a moment, but they cannot add a part behind the rerun's back, so what the rerun
skips is exactly what OUT holds, and no row is written twice.
"""

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, DataContext
from ray.util.debug import log_once
from tqdm import tqdm

from service.backfill.actor import Classify
from service.backfill.inputs import InputFiles, JsonlSource, ParquetSource, input_files
from service.backfill.outputs import Format, OutputError, OutputFolder, locate
from service.schemas import Explain
from service.settings import Settings

logger = logging.getLogger(__name__)

# How long the actor pool may take to start (model loads, and nodes an autoscaler adds).
ACTOR_START_TIMEOUT_S = 600


@dataclass(frozen=True)
class Job:
    """One backfill: IN and its format, OUT and its format, the model's settings (``threads``
    is each actor's), and how the work is spread."""

    source: str
    target: str
    input_format: Format
    output_format: Format
    settings: Settings
    actors: int | None = None  # None: as many as the cluster's CPUs hold
    cpus_per_actor: float = 1.0
    batch_size: int = 16
    rows_per_file: int = 256  # rows per part file
    explain: Explain = False
    restart: bool = False
    address: str = "local"  # "local": a new Ray on this machine; else a cluster's address
    progress: bool = True


@dataclass
class Summary:
    """What a run did and what OUT holds afterwards."""

    written: int = 0  # rows this run wrote
    errors: int = 0  # of which error rows
    parts: int = 0  # part files this run wrote
    skipped: int = 0  # ids OUT held before the run, not classified again
    rows: int = 0  # rows OUT holds now
    distinct_ids: int = 0  # distinct ids among them
    actors: int = 0  # the pool's size
    rows_per_node: dict[str, int] = field(default_factory=dict)
    rows_per_actor: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # the pipeline's time, Ray's start excluded

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def prepare_output(job: Job) -> tuple[OutputFolder, list[str]]:
    """OUT ready for this run, and the ids its complete parts hold (none with ``restart``).
    OutputError when OUT holds parts of the other format."""
    folder = OutputFolder(job.target, job.output_format)
    folder.create()
    foreign = folder.foreign_parts()
    if foreign:
        raise OutputError(
            f"{job.target} holds {len(foreign)} part files of another format (e.g. {foreign[0]}): "
            f"choose another OUT, or the format they are in"
        )
    if removed := folder.remove_temporaries():
        logger.warning("removed %d unfinished part files left by an interrupted run", removed)
    if job.restart and (removed := folder.remove_parts()):
        logger.info("--restart: removed %d part files from %s", removed, job.target)
    done = folder.ids()
    if done:
        logger.info("resuming: %d ids already in %s are skipped", len(done), job.target)
    return folder, done


def run(job: Job) -> Summary:
    """Classify IN into OUT as ``job`` says (connecting to or starting Ray), skipping the
    ids OUT already holds; what it did. InputError or OutputError before any work when IN or
    OUT is unusable; Ray's error when the pipeline fails (what was written stays)."""
    files = input_files(job.source, job.input_format)
    _check_apart(files, job)
    folder, done = prepare_output(job)
    _start_ray(job.address)
    try:
        started = time.monotonic()
        actors = job.actors or _actors_that_fit(job.cpus_per_actor)
        logger.info(
            "classifying %d %s file(s) from %s with %d actors x %d threads into %s (%s)",
            len(files.files),
            job.input_format,
            job.source,
            actors,
            job.settings.threads,
            job.target,
            job.output_format,
        )
        written = _execute(job, files, folder, done, actors)
        seconds = time.monotonic() - started
    finally:
        ray.shutdown()
    ids = folder.ids()
    summary = Summary(
        written=written.rows,
        errors=written.errors,
        parts=written.parts,
        skipped=len(done),
        rows=len(ids),
        distinct_ids=len(set(ids)),
        actors=actors,
        rows_per_node=dict(written.nodes),
        rows_per_actor=dict(written.actors),
        seconds=round(seconds, 3),
    )
    if summary.distinct_ids != summary.rows:
        repeated = [key for key, count in Counter(ids).items() if count > 1]
        logger.warning(
            "%s holds %d rows for %d ids (e.g. %r more than once): ids must be unique for a "
            "rerun to skip exactly what was written",
            job.target,
            summary.rows,
            summary.distinct_ids,
            repeated[0],
        )
    return summary


def _check_apart(files: InputFiles, job: Job) -> None:
    """OutputError when OUT lies inside IN: a rerun would read the parts as input."""
    source, target = files.location, locate(job.target)
    inside = target.path == source.path or target.path.startswith(source.path + "/")
    if inside and type(target.filesystem) is type(source.filesystem):
        raise OutputError(f"OUT ({job.target}) is inside IN ({job.source}): choose another OUT")


@dataclass
class Written:
    """What a run added to OUT: rows (of which error rows), part files, and rows per node and
    per actor that classified them."""

    rows: int = 0
    errors: int = 0
    parts: int = 0
    nodes: Counter = field(default_factory=Counter)
    actors: Counter = field(default_factory=Counter)


def _start_ray(address: str) -> None:
    """Connect to the cluster at ``address``, or start a Ray of this machine's CPUs ("local")."""
    options: dict[str, Any] = {"address": address, "logging_level": logging.WARNING}
    if address == "local":
        options["include_dashboard"] = False
    ray.init(**options)


def _actors_that_fit(cpus_per_actor: float) -> int:
    """As many actors as the cluster's CPUs hold (at least one)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))


def _execute(
    job: Job, files: InputFiles, folder: OutputFolder, done: list[str], actors: int
) -> Written:
    """Run the pipeline to its end, writing a part of ``job.rows_per_file`` rows each time
    that many have come in (and the rest at the end); what it wrote."""
    # The driver shows its own progress (rows classified), and says so once: Ray Data's
    # notice that its bars are off would only confuse.
    context = DataContext.get_current()
    context.enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")
    # Every actor of the pool loads its model before any batch is handed out; by default Ray
    # Data feeds the first actor that is ready, which on a short input (or a node slow to
    # start) can do all the work while the others load. A pool that cannot start in time
    # fails with Ray's "Timed out while starting actors" instead.
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    source_class = JsonlSource if job.input_format == "jsonl" else ParquetSource
    source = source_class(
        files.files,
        filesystem=files.location.filesystem,
        base=files.location.path,
        single=files.single,
        max_chars=job.settings.max_text_chars,
        block_rows=job.batch_size,
        skip=ray.put(pa.array(done, pa.string())) if done else None,
    )
    # Reading costs little next to the model: it reserves no CPU, so that the actors can
    # hold every CPU. Ray Data warns (once) of a hang when no CPU is free; with reads
    # reserving none there is none, so that warning is spent here.
    log_once("cpu_warning")
    dataset = ray.data.read_datasource(source, num_cpus=0).map_batches(
        Classify,
        fn_constructor_kwargs={"settings": job.settings, "explain": job.explain},
        batch_size=job.batch_size,
        batch_format="pyarrow",
        # A fixed pool; two batches in flight per actor keep it busy without one actor
        # hoarding the last batches while another idles.
        compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=2),
        num_cpus=job.cpus_per_actor,
    )
    written = Written()
    pending: list[pa.Table] = []
    with tqdm(unit="row", desc="classified", disable=not job.progress, file=sys.stderr) as bar:
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                pending.append(batch)
                bar.update(batch.num_rows)
                while sum(table.num_rows for table in pending) >= job.rows_per_file:
                    rows = pa.concat_tables(pending)
                    _write(folder, rows.slice(0, job.rows_per_file), written)
                    pending = [rows.slice(job.rows_per_file)]
        except KeyboardInterrupt:
            # What was classified is kept: a rerun does not classify it again.
            _write_rest(folder, pending, written)
            raise
        _write_rest(folder, pending, written)
    return written


def _write_rest(folder: OutputFolder, pending: list[pa.Table], written: Written) -> None:
    """Write the rows still ``pending`` (fewer than a part's worth), if any, as one part."""
    if pending and (rows := pa.concat_tables(pending)).num_rows:
        _write(folder, rows, written)


def _write(folder: OutputFolder, rows: pa.Table, written: Written) -> None:
    """Write the actors' ``rows`` as one part, and count them."""
    folder.write_part(rows["row"].to_pylist())
    written.rows += rows.num_rows
    written.errors += sum(rows["error"].to_pylist())
    written.parts += 1
    written.nodes.update(rows["node"].to_pylist())
    written.actors.update(rows["actor"].to_pylist())
