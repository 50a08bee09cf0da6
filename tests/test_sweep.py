"""minissl.experiments.sweep: one run per lambda setting, collected into sweep.json and a figure; in this
process or on a local Dask cluster; failures reported, finished runs kept, --resume."""

import html
import json

import pytest

from minissl.experiments import sweep

TINY = ["--", "--offline", "--timing-seconds", "0", "--epochs", "1", "--ssl-epochs", "1",
        "--finetune-epochs", "0"]


def read(out):
    return json.loads((out / "sweep.json").read_text())


def test_an_in_process_sweep_collects_every_run_and_resume_skips_them(
        tmp_path, no_mnist_anywhere, capsys, with_reports):
    out = tmp_path / "sweep"
    sweep.main(["mnist_mlp", "--lambda-scale", "1", "3", "--in-process", "--out", str(out),
                *TINY])
    state = read(out)
    assert state["complete"] is True
    assert {name: task["status"] for name, task in state["tasks"].items()} == {
        "scale_1": "done", "scale_3": "done"}
    assert [task["seed"] for task in state["tasks"].values()] == [0, 1]  # its own seed each
    assert "--no-baseline" in state["tasks"]["scale_3"]["argv"]  # the baseline trains once
    rows = [(p["run"], p["row"]) for p in state["points"]]
    assert rows.count(("scale_1", "baseline")) == 1 and ("scale_3", "SSL 1") in rows
    assert state["front"] and (out / "sweep.png").stat().st_size > 0
    for point in state["points"]:
        assert 0 <= point["error"] <= 1 and 0 < point["flop_pct"] <= 100
    index = (out / "index.html").read_text()
    assert index.count('href="scale_') == 2 and "data:image/png;base64," in index
    assert all((out / name / "report.html").exists() for name in state["tasks"])
    capsys.readouterr()
    sweep.main(["mnist_mlp", "--lambda-scale", "1", "3", "--in-process", "--out", str(out),
                "--resume", *TINY])
    printed = capsys.readouterr().out
    assert printed.count("already has a complete result; skipped (--resume)") == 2
    assert " epoch " not in printed  # nothing was trained again


def test_a_failing_task_is_reported_and_the_sweep_goes_on(tmp_path, no_mnist_anywhere,
                                                         monkeypatch, capsys):
    real = sweep.lambda_arguments

    def broken_for_scale_2(demo, scale):
        return ["--lambda", "1", "x", "1"] if scale == 2 else real(demo, scale)

    monkeypatch.setattr(sweep, "lambda_arguments", broken_for_scale_2)
    out = tmp_path / "sweep"
    sweep.main(["mnist_mlp", "--lambda-scale", "2", "1", "--in-process", "--out", str(out),
                *TINY])
    state = read(out)
    assert state["tasks"]["scale_2"]["status"] == "failed"
    assert "exited: 2" in state["tasks"]["scale_2"]["error"]  # argparse's exit status
    assert state["tasks"]["scale_1"]["status"] == "done" and state["complete"] is False
    assert "task scale_2 failed" in capsys.readouterr().out
    first_line = state["tasks"]["scale_2"]["error"].splitlines()[0]
    assert f"failed: {html.escape(first_line)}" in (out / "index.html").read_text()


def test_a_sweep_on_a_local_dask_cluster_runs_its_tasks_on_the_workers(tmp_path,
                                                                      no_mnist_anywhere):
    pytest.importorskip("dask.distributed")
    out = tmp_path / "sweep"
    sweep.main(["mnist_mlp", "--lambda-scale", "1", "2", "--workers", "2", "--out", str(out),
                *TINY])
    state = read(out)
    assert state["complete"] is True
    workers = [task.get("worker") for task in state["tasks"].values()]
    assert all(worker and worker.startswith("tcp://") for worker in workers)
    assert len(state["points"]) == 3  # the baseline and two SSL rows


def test_flags_the_sweep_owns_are_refused_after_the_separator(capsys):
    with pytest.raises(SystemExit):
        sweep.parse_args(["mnist_mlp", "--", "--out", "x"])
    assert "--out after -- is set by the sweep" in capsys.readouterr().err


def test_the_pareto_front_keeps_only_unbeaten_points():
    points = [{"flop_pct": 10, "error": 0.02}, {"flop_pct": 20, "error": 0.03},
              {"flop_pct": 30, "error": 0.015}, {"flop_pct": 100, "error": 0.014}]
    assert [p["flop_pct"] for p in sweep.pareto_front(points)] == [10, 30, 100]
