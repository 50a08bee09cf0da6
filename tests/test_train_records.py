"""minissl.train.records: one run per --out, results.json that is always current and strict JSON,
and a diverged row that claims nothing."""

import json
import os
import threading

import numpy as np
import pytest

from minissl.experiments import mnist_mlp
from minissl.train import records


def strict_json(path):
    """Parse a file as strict JSON: NaN and Infinity fail the test."""
    return json.loads(path.read_text(),
                      parse_constant=lambda name: pytest.fail(f"{name} in {path.name}"))


def test_json_safe_turns_nan_into_null_and_numpy_into_python_numbers():
    payload = {"loss": float("nan"), "gain": np.float32(np.inf), "n": np.int64(3),
               "flags": (np.bool_(True), 1.5), "weights": np.zeros((2, 2))}
    assert records.json_safe(payload) == {"loss": None, "gain": None, "n": 3,
                                          "flags": [True, 1.5]}


def test_concurrent_writers_never_collide(tmp_path):
    """Each writer has its own temporary file (before: one fixed .part name, which raced)."""
    path, errors = tmp_path / "results.json", []

    def writer(index):
        try:
            for step in range(50):
                records.write_json(path, {"writer": index, "step": step})
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert strict_json(path)["step"] == 49
    assert sorted(os.listdir(tmp_path)) == ["results.json"]  # no temporary file left


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    with pytest.raises(TypeError):
        records.write_json(tmp_path / "results.json", {"not json": object()})
    assert os.listdir(tmp_path) == []


def test_a_second_run_into_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    first = records.OutputLock(out)
    try:
        with pytest.raises(SystemExit, match=f"another minissl run \\(pid {os.getpid()}"):
            mnist_mlp.main(["--offline", "--out", str(out)])
        assert "data:" not in capsys.readouterr().out  # refused before any data was read
    finally:
        first.release()
    assert not (out / records.LOCK_NAME).exists()


def test_a_stale_lock_is_named_and_force_takes_it_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # a finished process
    (out / records.LOCK_NAME).write_text(f"{gone} {socket.gethostname()}\n")
    with pytest.raises(records.RunFolderError,
                       match=f"stale lock from a run \\(pid {gone}\\).*--force"):
        records.OutputLock(out)
    lock = records.OutputLock(out, force=True)
    assert (out / records.LOCK_NAME).read_text().split()[0] == str(os.getpid())
    lock.release()


def test_a_diverged_run_claims_nothing_and_writes_strict_json(tmp_path, no_mnist_anywhere, capsys,
                                                               with_reports):
    """--lr 1e6: the loss goes non-finite; every row is marked diverged (no compaction, no
    'same predictions'), results.json is strict JSON, and the exit status says it failed."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="every row diverged"):
        mnist_mlp.main(["--offline", "--out", str(out), "--lr", "1e6", "--epochs", "1",
                        "--ssl-epochs", "1", "--finetune-epochs", "0",
                        "--lambda", "0.01", "0.01", "0.01"])
    printed = capsys.readouterr().out
    assert "the training loss became nan" in printed and "lower --lr" in printed
    assert "same predictions" not in printed and "compacted" not in printed
    results = strict_json(out / "results.json")
    assert results["complete"] is True
    assert [row["name"] for row in results["rows"]] == ["baseline", "SSL 1"]
    assert all(set(row) == {"name", "diverged"} for row in results["rows"])
    assert not (out / records.LOCK_NAME).exists()
    assert "diverged: baseline, SSL 1" in (out / "report.html").read_text()


def test_a_speedup_the_flops_cannot_explain_is_marked_not_printed_plain(
        tmp_path, no_mnist_anywhere, capsys, monkeypatch):
    from minissl import timing

    monkeypatch.setattr(timing, "speedup_flags", lambda speedup, quartiles, flop_pct: [
        f"{speedup:.2f}x is above its FLOP-ideal 1.00x"])
    mnist_mlp.main(["--offline", "--out", str(tmp_path / "run"), "--no-baseline", "--epochs", "1",
                    "--ssl-epochs", "1", "--finetune-epochs", "0", "--lambda", "0.01", "0", "0"])
    printed = capsys.readouterr().out
    assert "warning: layer 0:" in printed and "machine noise, not a result" in printed
    assert "? = a timing the FLOPs cannot explain" in printed
    table_line = [line for line in printed.splitlines() if line.startswith("SSL 1 ")][-1]
    assert table_line.count("?") == 4  # three layers and the whole network
    results = strict_json(tmp_path / "run" / "results.json")
    assert all(entry["flags"] for entry in results["rows"][0]["compacted"]["layers"])
    assert results["rows"][0]["compacted"]["whole_flags"]
