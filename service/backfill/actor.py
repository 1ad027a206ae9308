"""The classifying actor: one model per actor, loaded once, then batch after batch.

Ray Data keeps a pool of these (``map_batches`` with a callable class): each holds one engine
(``threads`` llama.cpp threads), built in ``__init__`` from the driver's settings, and turns
input rows (service/backfill/inputs.py) into output rows with the rules every other way in
shares (service/records.py): what POST /classify answers for the text, or the API's error.
"""

import json
import logging

import pyarrow as pa
import ray

from service.classifier import build_classifier
from service.records import outcome
from service.schemas import Explain
from service.settings import Settings
from service.validation import TextProblem

logger = logging.getLogger(__name__)

# What the actors hand the writers: each row's JSON (what a JSONL part holds), whether it is an
# error row, and where it was classified, which the writers count and drop.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("row", pa.string(), nullable=False),
        pa.field("error", pa.bool_(), nullable=False),
        pa.field("node", pa.string(), nullable=False),
        pa.field("actor", pa.string(), nullable=False),
    ]
)


class Classify:
    """A callable class for ``Dataset.map_batches``: input rows in, output rows out."""

    def __init__(self, settings: Settings, explain: Explain = False) -> None:
        # A backfill's record is its output; a log line per text would bury the progress.
        logging.getLogger("service.classifier").setLevel(logging.WARNING)
        self.classifier = build_classifier(settings)
        self.explain = explain
        context = ray.get_runtime_context()
        self.node = context.get_node_id()
        self.actor = context.get_actor_id() or "driver"
        logger.info(
            "actor %s on node %s loaded %s (%d threads)",
            self.actor,
            self.node,
            self.classifier.engine.info.name,
            settings.threads,
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        """One output row per input row, in order."""
        rows, errors = [], []
        for record in batch.to_pylist():
            text: str | TextProblem = record["text"]
            if record["error_type"] is not None:
                text = TextProblem(record["error_type"], record["error_message"])
            answer = outcome(self.classifier, text, explain=self.explain)
            rows.append(json.dumps({"id": record["id"], **answer}))
            errors.append("error" in answer)
        count = len(rows)
        columns = {"row": rows, "error": errors, "node": [self.node] * count}
        return pa.table({**columns, "actor": [self.actor] * count}, schema=RESULT_SCHEMA)
