"""Backfills on Ray: ``python -m service.backfill IN OUT`` (see service/backfill/cli.py).

Needs the ``ray`` extra; nothing outside this package imports Ray, so serving runs without it.
"""
