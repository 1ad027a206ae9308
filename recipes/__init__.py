"""End-to-end recipes above every other package: each a thin orchestrator of library calls
(dataset, training, conversion, verification, evaluation), like trl's ``scripts/``."""
