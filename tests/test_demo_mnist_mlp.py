import json

import pytest

from minissl.experiments import cli, mnist_mlp


@pytest.mark.slow
def test_quick_run_on_the_bundled_sample_learns_and_writes_results(tmp_path, no_mnist_anywhere,
                                                                   capsys):
    out = tmp_path / "run"
    mnist_mlp.main(["--offline", "--timing-seconds", "0", "--out", str(out), "--epochs", "3",
                    "--ssl-epochs", "6", "--finetune-epochs", "1",
                    "--lambda", "0.05", "0.05", "0.05"])
    printed = capsys.readouterr().out
    assert "bundled 10,000-digit sample" in printed
    assert "groups with 0 < norm < 0.001 set to exactly zero" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "mnist_mlp"
    assert results["dataset"]["name"] == "MNIST sample"
    assert (results["dataset"]["n_train"], results["dataset"]["n_test"]) == (8000, 2000)
    baseline, sparse = results["rows"]
    assert baseline["name"] == "baseline" and baseline["neurons"] == [784, 500, 300, 10]
    assert 0.0 <= baseline["error"] < 0.10
    assert sparse["lambda"] == [0.05, 0.05, 0.05] and sparse["error"] < 0.15
    assert sparse["neurons"][0] < 784          # strong lambda: background pixels go
    assert sparse["neurons"][-1] == 10
    input_zeros = sparse["zero_groups"][0]
    assert input_zeros["zero"] == 784 - sparse["neurons"][0]  # removed units have norm exactly 0.0
    assert len(sparse["flops_pct"]) == 3 and sparse["flops_pct"][0] < 100
    compacted = sparse["compacted"]
    assert compacted["same_predictions"] == [2000, 2000] and compacted["error"] == sparse["error"]
    assert compacted["params"][1] < compacted["params"][0]
    assert [entry["layer"] for entry in compacted["layers"]] == ["0", "2", "4"]
    assert all(entry["speedup"] > 0 for entry in compacted["layers"]) and compacted["whole_speedup"] > 0
    assert "same predictions on all 2,000 test images" in printed
    # one FLOP counter: the table prints the compaction plan's per-layer FLOPs
    assert sparse["flops_pct"] == [entry["flop_pct"] for entry in compacted["layers"]]
    table_line = [line for line in printed.splitlines() if line.startswith("SSL 1 ")][-1]
    assert "  ".join(f"{value:5.1f}" for value in sparse["flops_pct"]) in table_line
    assert "-".join(map(str, sparse["neurons"])) in table_line
    whole = 100.0 * compacted["flops"][1] / compacted["flops"][0]  # the plan's totals
    assert mnist_mlp.total_flop_pct(sparse["flops_pct"]) == pytest.approx(whole)
    baseline_line = [line for line in printed.splitlines() if line.startswith("baseline ")][-1]
    assert baseline["flops_pct"] == [100.0, 100.0, 100.0] and "100.0  100.0  100.0" in baseline_line
    assert len(results["history"]) == results["epochs"] + results["ssl_epochs"] + results["finetune_epochs"]
    assert (out / "sparsity.png").stat().st_size > 0
    assert not list(out.glob("*.part*"))


def test_the_paper_rows_and_ours_count_flops_the_same_way():
    """The paper's whole-network FLOP % (for the sweep's figure) weights its per-layer FLOP %
    by the dense layers' FLOPs from the compaction plan; its neuron counts give the same."""
    from minissl import compact, models

    paper = mnist_mlp.PAPER_ROWS[1]
    neurons = paper["neurons"]
    kept = sum(a * b for a, b in zip(neurons[:-1], neurons[1:]))
    assert mnist_mlp.total_flop_pct(paper["flops_pct"]) == pytest.approx(
        100.0 * kept / (784 * 500 + 500 * 300 + 300 * 10), abs=0.01)
    assert [layer.flops_before for layer in compact.plan_compaction(models.mlp()).layers] == [
        2 * 784 * 500, 2 * 500 * 300, 2 * 300 * 10]


@pytest.mark.parametrize("quick, n_train, expected", [
    (False, 60000, (20, 20, 10)), (False, 8000, (20, 160, 80)), (True, 8000, (20, 64, 16)),
])
def test_default_ssl_epochs_keep_the_step_count_on_smaller_data(quick, n_train, expected):
    """On the sample, the SSL and fine-tuning epochs scale by 8; the baseline only up to the
    full run's 20 epochs."""
    given = {name: None for name in mnist_mlp.EPOCHS}
    counts = cli.epoch_counts(given, n_train, mnist_mlp.EPOCHS, mnist_mlp.QUICK_EPOCHS, quick)
    assert (counts["epochs"], counts["ssl_epochs"], counts["finetune_epochs"]) == expected


def test_explicit_epochs_are_kept():
    given = {"epochs": 2, "ssl_epochs": None, "finetune_epochs": 0}
    counts = cli.epoch_counts(given, 8000, mnist_mlp.EPOCHS, mnist_mlp.QUICK_EPOCHS)
    assert (counts["epochs"], counts["ssl_epochs"], counts["finetune_epochs"]) == (2, 160, 0)


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        mnist_mlp.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--epochs", "--batch-size", "--lr", "--momentum", "--weight-decay", "--seed",
                 "--out", "--quick", "--offline", "--lambda", "--ssl-epochs", "--finetune-epochs", "--cut",
                 "--mode", "--prox-lr-floor", "--no-baseline"):
        assert flag in text


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be > 0"),
    (["--lambda", "1", "-1", "1"], "the lambdas must be >= 0"),
    (["--momentum", "-5"], "--momentum must be >= 0"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--lr", "nan"], "--lr must be > 0"),
    (["--mode", "lasso"], "invalid choice"),
])
def test_bad_flags_are_rejected(argv, message, capsys):
    with pytest.raises(SystemExit):
        mnist_mlp.parse_args(argv)
    assert message in capsys.readouterr().err


def test_help_states_the_measured_durations(capsys):
    with pytest.raises(SystemExit):
        mnist_mlp.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "Measured on 2 cores" in text and "--quick took" in text
