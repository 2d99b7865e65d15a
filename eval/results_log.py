"""`results.jsonl`: the per-query results of an evaluation, written as they come.

The first line holds the run's settings and their hash; then one JSON record per query,
each flushed and synced before the next query starts, so a killed run loses at most the
query it was on. Reopened with `resume=True` and the same settings, the records are read
back (a torn, unterminated last line is dropped and cut off) and the run goes on after
them; with other settings it refuses, naming the settings that differ, rather than mix
two runs in one report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from evident.tools.errors import InputError

log = logging.getLogger(__name__)


def config_hash(config: dict) -> str:
    """A short hash of the settings.

    >>> config_hash({"k": 10}) == config_hash({"k": 10}) != config_hash({"k": 20})
    True
    """
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


class ResultsLog:
    """`results.jsonl`: a header line `{"config", "config_hash"}`, then one record per query."""

    def __init__(self, path: Path, config: dict, *, resume: bool) -> None:
        self.path = path
        self.header = {"config_hash": config_hash(config), "config": config}
        self.records: dict[str, dict] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.is_file() and path.stat().st_size:
            self._read()
        else:
            path.write_text(json.dumps(self.header, sort_keys=True) + "\n", encoding="utf-8")

    def _read(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete = raw[: len(raw) - len(lines[-1])]  # drop a torn (unterminated) last line
        rows = []
        for number, line in enumerate(complete.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise InputError(
                    f"{self.path}:{number} is not valid JSON ({exc}); delete the file to "
                    "start over."
                ) from exc
        if not rows or rows[0].get("config_hash") != self.header["config_hash"]:
            old = rows[0].get("config", {}) if rows else {}
            new = self.header["config"]
            diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            raise InputError(
                f"{str(self.path)!r} holds results of a run with other settings "
                f"(differing: {', '.join(diff) or 'unknown'}); pass another --out, or delete "
                "the file to start over."
            )
        self.records = {r["id"]: r for r in rows[1:]}
        if len(complete) != len(raw):
            with self.path.open("r+b") as f:
                f.truncate(len(complete))
        log.info("resuming: %d queries already in %s", len(self.records), self.path)

    def append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["id"]] = record
