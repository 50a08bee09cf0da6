"""Run records, so that a run never loses work and never writes a false number:

- `open_run(out, experiment, ...)`: checks that the folder can be written, claims it and
  returns the run's `RunRecord` (with its checkpoints, minissl.train.checkpoint);
- `OutputLock`: one run at a time per output folder (a second is refused with RunFolderError;
  `force` takes over);
- `RunRecord`: results.json written after every epoch and every row, atomically, with
  `"complete": false` until the end, in strict JSON (null, never NaN), and report.html
  (minissl.train.html_report) beside it;
- `Diverged`: raised by the training loop when the loss stops being finite; the experiment
  marks that row as diverged and claims nothing else for it (no compaction, no speedup);
- `current_record()`: the record an interrupted program saves before it exits.
"""

import datetime
import json
import math
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from minissl.atomic import atomic_file

LOCK_NAME = ".minissl-run.lock"

_current = {"record": None}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite: the row cannot be trusted."""


class RunFolderError(RuntimeError):
    """The output folder cannot be used: not writable, or claimed by another run."""


def current_record():
    """The RunRecord of the run in progress in this process (None before open_run)."""
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
            raise RunFolderError(self._refusal(out)) from None
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
        """Why the folder is refused, and what to do (names the flags of the experiments)."""
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


def write_text(path, text):
    """Write `text` to `path` atomically: into a temporary file with a unique name beside
    `path`, then renamed over it. A failed write leaves no partial file. Returns the Path."""
    path = Path(path)
    with atomic_file(path) as file:
        file.write(text)
    return path


def write_json(path, payload):
    """Write `payload` as strict JSON (json_safe) atomically (write_text); returns the
    plain data written."""
    safe = json_safe(payload)
    write_text(path, json.dumps(safe, indent=2, allow_nan=False) + "\n")
    return safe


def _cpu_model():
    """The processor's name as Linux reports it, or "" elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def run_facts(argv, experiment):
    """Where and from what a run came: its command, the commit of the checkout minissl runs
    from (None outside a git checkout), the machine and the start time."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    machine = (f"{platform.node()}: {_cpu_model() or platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
               f"{platform.python_version()}, NumPy {np.__version__}")
    return {"command": " ".join([f"python -m demos.{experiment}", *argv]),
            "commit": commit or None, "machine": machine,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


class RunRecord:
    """What one run has done so far, and <out>/results.json that mirrors it.

    `rows` are the table's rows, `history` one record per epoch; `fields` everything else
    (experiment, schedule, dataset, seed, ...). Every add_epoch/add_row rewrites results.json
    with "complete": false; finish() writes it with "complete": true. `checkpoints` is the
    run's minissl.train.checkpoint.PhaseCheckpoints (None: epochs are not checkpointed).
    With `report` the run's report.html is rewritten too: after every row, at the end, when
    the run stops, and after an epoch once REPORT_SECONDS have passed since the last (a
    report takes a second or two to draw; a long run should not spend more on it).
    """

    REPORT_SECONDS = 300.0

    def __init__(self, out, experiment, argv=(), lock=None, checkpoints=None, report=False):
        self.out, self.lock, self.checkpoints = Path(out), lock, checkpoints
        self.path = self.out / "results.json"
        self.started = time.perf_counter()
        self.rows, self.history = [], []
        self.fields = {"experiment": experiment}
        self.argv = [str(value) for value in argv]
        self.report, self._reported, self._report_failed = report, self.started, False

    def set(self, **fields):
        """Record fields of the run (dataset, schedule, seed, ...) for the next save."""
        self.fields.update(fields)

    def add_epoch(self, record):
        self.history.append(record)
        self.save()

    def add_row(self, row):
        self.rows.append(row)
        self.save(report_now=True)

    def payload(self, complete, **status):
        return {**self.fields, "complete": complete, **status, "rows": self.rows,
                "history": self.history, "wall_time_s": time.perf_counter() - self.started,
                "argv": self.argv}

    def save(self, complete=False, report_now=False, **status):
        written = write_json(self.path, self.payload(complete, **status))
        now = time.perf_counter()
        if self.report and not self._report_failed and (
                complete or status or report_now or now - self._reported >= self.REPORT_SECONDS):
            self._write_report(written)
            self._reported = now

    def _write_report(self, results):
        """report.html from `results`; a failure is said once and never stops the run."""
        from minissl.train.html_report import write_report
        try:
            write_report(self.out, results)
        except Exception as error:  # the report must never cost a training run
            self._report_failed = True
            print(f"note: {self.out / 'report.html'} not written ({type(error).__name__}: "
                  f"{error}); results.json is complete, rebuild it with python -m "
                  f"minissl.train.html_report {self.out}")

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


def check_writable(out):
    """Raise RunFolderError unless `out` is (or can be made) a folder we can write files in."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out, prefix=".write-check.")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise RunFolderError(f"--out {out} is not a folder minissl can write in "
                             f"({error.strerror or error})") from None


def open_run(out, experiment, argv=(), resume=False, force=False):
    """Start a run into the folder `out`: check it can be written, claim it (RunFolderError
    when another run holds it; `force` takes it over, `resume` takes a stale claim) and
    return the run's RunRecord, with checkpoints (loaded on `resume`), registered as this
    process's current record. `argv` is kept in results.json: what resumes the run. The
    record writes report.html too, unless the environment has MINISSL_REPORT=0 (for scripts
    and test suites that start many short runs: a report takes a second or two to draw)."""
    from minissl.train.checkpoint import PhaseCheckpoints

    check_writable(out)
    lock = OutputLock(out, force=force, take_stale=resume)
    report = os.environ.get("MINISSL_REPORT", "1") != "0"  # 0: no report.html (many short runs)
    record = RunRecord(out, experiment, argv, lock, PhaseCheckpoints(out, resume=resume),
                       report=report)
    record.set(run=run_facts(record.argv, experiment))
    _current["record"] = record
    return record
