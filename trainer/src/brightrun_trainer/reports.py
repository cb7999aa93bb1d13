"""What the trainer tells the cluster adapter, as files in its run folder.

- ``events.jsonl``: append-only, one JSON object per line, each with a ``seq`` (1, 2, ...):
  ``metric``, ``log`` and ``checkpoint`` events. A line is written whole and fsynced before the
  next one; a reader takes complete lines only (a cursor is a byte offset), so a trainer killed
  mid-write leaves at most one partial line, which the next start cuts off.
- ``state.json``: the run now (status, stage, step, epoch, error, evaluation, artifacts),
  replaced atomically (written beside, fsynced, renamed).

A restarted trainer (after a preemption) appends to the same files: ``seq`` and log indexes
carry on; metric points of steps it runs again carry the same step (the saga records a step once).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

EVENTS = "events.jsonl"
STATE = "state.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Reporter:
    def __init__(self, run_dir: Path, clock=time.time):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.events_path = self.run_dir / EVENTS
        self.state_path = self.run_dir / STATE
        self.seq = 0
        self.log_index = 0
        self._recover_events()
        self.state: dict = {}
        if self.state_path.exists():
            try:
                self.state = json.loads(self.state_path.read_text())
            except ValueError:
                self.state = {}
        self.started_at = float(self.state.get("startedAt") or self.clock())
        self.state["startedAt"] = self.started_at
        self.state["starts"] = int(self.state.get("starts", 0)) + 1
        self._events = open(self.events_path, "ab")  # noqa: SIM115 - held for the run

    def _recover_events(self) -> None:
        if not self.events_path.exists():
            return
        data = self.events_path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a line cut by a crash
            with open(self.events_path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        for raw in data[:end].splitlines():
            event = json.loads(raw)
            self.seq = max(self.seq, event["seq"])
            if event["kind"] == "log":
                self.log_index = max(self.log_index, event["index"] + 1)

    def elapsed(self) -> float:
        return round(self.clock() - self.started_at, 3)

    def _emit(self, kind: str, body: dict) -> dict:
        self.seq += 1
        event = {"seq": self.seq, "kind": kind, **body}
        self._events.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
        self._events.flush()
        os.fsync(self._events.fileno())
        return event

    def metric(self, **point) -> dict:
        return self._emit("metric", {**point, "atSeconds": self.elapsed()})

    def log(self, level: str, message: str) -> dict:
        event = self._emit(
            "log",
            {
                "index": self.log_index,
                "level": level,
                "message": message,
                "atSeconds": self.elapsed(),
            },
        )
        self.log_index += 1
        return event

    def checkpoint(self, **checkpoint) -> dict:
        return self._emit("checkpoint", checkpoint)

    def update(self, **fields) -> None:
        self.state.update(fields)
        self.state["updatedAt"] = self.clock()
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(self.state, separators=(",", ":")).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
        _fsync_dir(self.run_dir)

    def close(self) -> None:
        self._events.close()


def read_events(run_dir: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete events after byte ``offset``, and the offset to pass next time."""
    path = Path(run_dir) / EVENTS
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    return [json.loads(raw) for raw in data[:end].splitlines()], offset + end


def read_state(run_dir: Path) -> dict:
    path = Path(run_dir) / STATE
    return json.loads(path.read_text()) if path.exists() else {}
