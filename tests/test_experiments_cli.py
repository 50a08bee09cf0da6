"""minissl.experiments.cli and the engine's report: the checks every experiment relies on."""

import numpy as np
import pytest

from minissl.experiments import cli
from minissl.train import records, report
from minissl import models


def test_compaction_report_refuses_a_compacted_model_that_disagrees(monkeypatch):
    """'Same predictions' is checked, not assumed: a disagreeing small model is an error."""
    model = models.mlp((4, 3, 2))
    inputs = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    answers = iter([np.zeros(10, np.int64), np.r_[np.ones(3, np.int64), np.zeros(7, np.int64)]])
    monkeypatch.setattr(report, "predict", lambda _model, _inputs: next(answers))
    with pytest.raises(RuntimeError, match="disagrees with the sparse one on 3 of 10 images"):
        report.compaction_report(model, inputs, np.zeros(10, np.int64))


def test_ctrl_c_ends_a_demo_with_one_line_and_status_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        cli.run(interrupted)
    assert exit_info.value.code == 130
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err


def test_ctrl_c_inside_a_compiled_call_is_an_interrupt_too(capsys):
    """Numba hands an interrupt that lands inside a compiled call back as a SystemError
    caused by the KeyboardInterrupt (seen on a LeNet run); other errors stay errors."""
    def interrupted_inside_numba():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise SystemError("CPUDispatcher(...) returned a result with an exception set") \
                from interrupt

    with pytest.raises(SystemExit) as exit_info:
        cli.run(interrupted_inside_numba)
    assert exit_info.value.code == 130
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err

    def failing():
        raise SystemError("a real failure")

    with pytest.raises(SystemError, match="a real failure"):
        cli.run(failing)


@pytest.mark.parametrize("signal_name, status, said", [("SIGINT", 130, "Ctrl-C"),
                                                        ("SIGTERM", 143, "SIGTERM")])
def test_a_demo_interrupted_by_a_signal_keeps_its_finished_rows(tmp_path, signal_name, status,
                                                               said):
    """A real SIGINT (Ctrl-C) or SIGTERM (a scheduler, `timeout`) to `python -m
    demos.cifar_convnet` halfway: after the baseline row has finished and the first SSL epoch
    has ended (past Numba's compilation: an interrupt inside Numba's compiler is not ours to
    catch). One line, status 130 or 143, no traceback, and a strict results.json that holds
    the finished row and says the run is incomplete."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "demos.cifar_convnet", "--synthetic", "2000",
               "--out", str(out), "--epochs", "1", "--ssl-epochs", "50", "--timing-seconds", "0"]
    # a shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    # in the child: give the demo the default disposition, as a terminal's Ctrl-C finds it
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                               env=dict(os.environ, PYTHONUNBUFFERED="1", MINISSL_REPORT="1"),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if line.startswith("SSL") and "epoch  1/50" in line:
            break
    assert process.poll() is None, process.communicate()[1][-2000:]
    process.send_signal(getattr(signal, signal_name))
    _, err = process.communicate(timeout=300)  # a bound on a hang, not a speed
    assert process.returncode == status, err[-2000:]
    assert f"interrupted ({said})" in err and "1 finished rows" in err and "Traceback" not in err
    assert f"--resume {out}" in err
    results = json.loads((out / "results.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} in results.json"))
    assert results["complete"] is False and results["interrupted"] is True
    assert results["stopped_by"] == said
    assert [row["name"] for row in results["rows"]] == ["baseline"]
    assert [epoch["phase"] for epoch in results["history"]][:2] == ["baseline", "SSL x1"]
    assert not (out / records.LOCK_NAME).exists()  # the folder is free for the next run
    report = (out / "report.html").read_text()
    assert f"interrupted ({said})" in report and "--resume" in report


def test_a_negative_timing_budget_stops_a_demo_before_any_data_is_read(tmp_path, capsys):
    from minissl.experiments import cifar_convnet

    with pytest.raises(SystemExit):
        cifar_convnet.main(["--synthetic", "200", "--out", str(tmp_path / "run"),
                            "--timing-seconds", "-1"])
    printed = capsys.readouterr()
    assert "--timing-seconds must be >= 0" in printed.err and "data:" not in printed.out


@pytest.mark.parametrize("make_out", [
    lambda tmp: tmp / "a_file",            # --out names an existing file
    lambda tmp: tmp / "a_file" / "run",    # --out below a file: cannot be created
])
def test_an_unwritable_out_stops_a_demo_before_any_data_is_read(tmp_path, make_out, capsys):
    from minissl.experiments import cifar_convnet

    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(SystemExit, match="is not a folder minissl can write in"):
        cifar_convnet.main(["--synthetic", "200", "--out", str(make_out(tmp_path))])
    assert "data:" not in capsys.readouterr().out  # it stopped before loading anything


def test_redirected_output_has_one_line_per_epoch_and_no_progress_redraws(tmp_path):
    """Progress bars only on a terminal: a log file gets the epoch lines, not redraws."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "MINISSL_DATA"}
    env["HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "demos.mnist_mlp", "--offline", "--out", str(tmp_path / "run"),
         "--no-baseline", "--epochs", "1", "--ssl-epochs", "2", "--finetune-epochs", "1",
         "--lambda", "0.01", "0", "0", "--timing-seconds", "0"],
        capture_output=True, text=True, timeout=300, env=env,
        cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr and len(done.stderr) < 2000
    epoch_lines = [line for line in done.stdout.splitlines() if " epoch " in line]
    assert len(epoch_lines) == 2 + 1


def test_ssl_rows_start_from_the_baseline_only_when_asked_and_never_from_a_diverged_one():
    from minissl.train.records import Diverged

    weights = {"0.weight": np.zeros(3)}
    assert cli.ssl_start_weights(None, {}) is None
    assert cli.ssl_start_weights("", {"weights": weights}) is weights
    with pytest.raises(Diverged, match="the baseline it starts from"):
        cli.ssl_start_weights("", {"weights": None})  # it diverged
    assert cli.baseline_weights("") is None  # this run's baseline fills it
