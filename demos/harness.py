"""The run harness every demo uses, so that a run never loses work and never writes a false
number:

- `OutputLock`: one run at a time per --out folder (a second is refused; --force takes over);
- `RunRecord`: results.json written after every epoch and every row, atomically, with
  `"complete": false` until the end, in strict JSON (null, never NaN);
- `Diverged`: raised by the training loop when the loss stops being finite; the demo marks
  that row as diverged and claims nothing else for it (no compaction, no speedup);
- `current_record()`: what demos.common.run saves when Ctrl-C ends a run.
"""

import json
import math
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LOCK_NAME = ".minissl-run.lock"

_current = {"record": None}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite: the row cannot be trusted."""


def current_record():
    """The RunRecord of the run in progress in this process (None before start_run)."""
    return _current["record"]


class OutputLock:
    """An exclusive claim on an output folder: the file <out>/.minissl-run.lock holding the
    owner's process id and host. Created with O_EXCL, so two runs cannot both get it."""

    def __init__(self, out, force=False, take_stale=False):
        self.path = Path(out) / LOCK_NAME
        if force or (take_stale and self._is_stale()):
            self.path.unlink(missing_ok=True)
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            sys.exit(f"error: {self._refusal(out)}")
        with os.fdopen(handle, "w") as file:
            file.write(f"{os.getpid()} {socket.gethostname()}\n")
        self.owner = os.getpid()

    def _is_stale(self):
        """True when the lock file names a process on this host that no longer runs."""
        try:
            pid, host = self.path.read_text().split()[:2]
        except (OSError, ValueError):
            return False
        return host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid))

    def _refusal(self, out):
        try:
            pid, host = self.path.read_text().split()[:2]
        except (OSError, ValueError):
            pid, host = "?", "?"
        if host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid)):
            return (f"--out {out} holds a stale lock from a run (pid {pid}) that is no longer "
                    f"running; pass --force to take the folder over")
        return (f"another minissl run (pid {pid} on {host}) is writing into --out {out}; wait "
                f"for it, choose another --out, or pass --force if that run is gone")

    def release(self):
        """Remove the lock file (only the process that took it does)."""
        if self.owner == os.getpid():
            self.path.unlink(missing_ok=True)
            self.owner = None


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def json_safe(value):
    """`value` as strict JSON data: NumPy scalars become Python numbers, non-finite floats
    become None (JSON has no NaN), tuples become lists; arrays and lists of arrays (weights a
    demo keeps for its figures) are left out of dicts: results.json keeps numbers, not tensors."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()
                if not _is_array(item)}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (np.integer, np.bool_)) or (isinstance(value, np.ndarray)
                                                      and value.ndim == 0):
        value = value.item()
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _is_array(value):
    """True for a NumPy or CuPy array of one or more dimensions, or a list of them."""
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(_is_array(item) for item in value)
    return getattr(value, "ndim", 0) > 0 and hasattr(value, "dtype")


def write_json(path, payload):
    """Write `payload` as strict JSON (json_safe) atomically: into a temporary file with a
    unique name beside `path`, then renamed over it. A failed write leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n"
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


class RunRecord:
    """What one demo run has done so far, and <out>/results.json that mirrors it.

    `rows` are the table's rows, `history` one record per epoch; `fields` everything else
    (schedule, dataset, seed, ...). Every add_epoch/add_row rewrites results.json with
    "complete": false; finish() writes it with "complete": true.
    """

    def __init__(self, args, experiment, lock):
        self.args, self.lock = args, lock
        self.path = Path(args.out) / "results.json"
        self.started = time.perf_counter()
        self.rows, self.history = [], []
        self.fields = {"experiment": experiment}
        self.checkpoints = None  # demos.checkpoint.PhaseCheckpoints, set by start_run

    def set(self, **fields):
        """Record fields of the run (dataset, schedule, ...) for the next save."""
        self.fields.update(fields)

    def add_epoch(self, record):
        self.history.append(record)
        self.save()

    def add_row(self, row):
        self.rows.append(row)
        self.save()

    def payload(self, complete, **status):
        args = self.args
        schedule = {name: getattr(args, name, None)
                    for name in ("epochs", "ssl_epochs", "finetune_epochs", "lr", "finetune_lr",
                                 "momentum", "weight_decay", "batch_size")}
        return {**self.fields, "complete": complete, **status, "rows": self.rows, **schedule,
                "history": self.history, "wall_time_s": time.perf_counter() - self.started,
                "seed": getattr(args, "seed", None),
                "argv": getattr(args, "argv", sys.argv[1:])}

    def save(self, complete=False, **status):
        write_json(self.path, self.payload(complete, **status))

    def finish(self, **fields):
        """Write the complete results.json and release the output folder."""
        self.set(**fields)
        self.save(complete=True)
        self.close()

    def close(self):
        if self.lock is not None:
            self.lock.release()
        if _current["record"] is self:
            _current["record"] = None


def start_record(args, experiment):
    """Lock args.out (exit with one line if another run holds it; --force takes over) and
    return this run's RunRecord, registered for the Ctrl-C handler."""
    lock = OutputLock(args.out, force=getattr(args, "force", False),
                      take_stale=getattr(args, "resume", None) is not None)
    record = RunRecord(args, experiment, lock)
    _current["record"] = record
    return record
