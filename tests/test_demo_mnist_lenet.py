import json

import numpy as np
import pytest

from minissl import train
from minissl.experiments import cli, mnist_lenet


@pytest.mark.slow
def test_quick_ssl_rows_on_the_bundled_sample_compact_and_write_results(tmp_path, no_mnist_anywhere,
                                                                        capsys):
    out = tmp_path / "run"
    mnist_lenet.main(["--offline", "--timing-seconds", "0", "--out", str(out), "--epochs", "1",
                      "--ssl-epochs", "1", "--finetune-epochs", "1",
                      "--filter-lambda", "0.3", "0.3", "0.3", "--shape-lambda", "0.2", "0.2",
                      "--rows", "filters", "shapes"])
    printed = capsys.readouterr().out
    assert "bundled 10,000-digit sample" in printed
    assert printed.count("same predictions on all 2,000 test images") == 3
    results = json.loads((out / "results.json").read_text())
    baseline, filters, shapes = results["rows"]
    assert baseline["filters"] == [20, 50] and baseline["columns"] == [25, 500]
    assert baseline["flops_pct"] == [100.0, 100.0] and baseline["error"] < 0.2
    assert filters["filters"][1] < 50 or filters["channels"][1] < 20   # strong lambdas prune
    assert shapes["columns"][1] < 500
    # the cut zeroes only groups below its threshold: 1e-3 by default, the shapes row's own
    for row, threshold in ((filters, 1e-3), (shapes, mnist_lenet.ROWS["shapes"][3]["cut"])):
        assert row["compacted"]["same_predictions"] == [2000, 2000]
        assert row["compacted"]["params"][1] < row["compacted"]["params"][0]
        assert len(row["speedup"]) == 2 and row["whole_speedup"] > 0
        cut = row["cut"]
        assert (cut["largest_norm_zeroed"] > 0) == (cut["groups_zeroed"] > 0)
        assert cut["largest_norm_zeroed"] < threshold and cut["threshold"] == threshold
        # the table counts what the compacted model keeps: conv1 keeps only the filters that
        # conv2 reads, never more than its nonzero filters
        assert row["filters"][0] == row["channels"][1] <= row["nonzero"]["filters"][0]
    assert [rule["kind"] for rule in filters["rules"]] == ["filter", "filter", "channel"]
    assert filters["name"] == "SSL filters (#2)" and shapes["name"] == "SSL shapes (#4)"
    assert len(results["history"]) == 1 + 2 * (1 + 1)
    assert (out / "sparsity.png").stat().st_size > 0 and not list(out.glob("*.part*"))


def test_ssl_rows_start_from_this_runs_baseline_unless_told_otherwise(capsys):
    assert mnist_lenet.parse_args([]).ssl_from_baseline == ""
    assert mnist_lenet.parse_args(["--ssl-from-scratch"]).ssl_from_baseline is None
    assert mnist_lenet.parse_args(["--no-baseline"]).ssl_from_baseline is None
    assert mnist_lenet.parse_args(["--ssl-from-baseline", "runs/x"]).ssl_from_baseline == "runs/x"
    with pytest.raises(SystemExit):
        mnist_lenet.parse_args(["--ssl-from-scratch", "--ssl-from-baseline", "runs/x"])
    assert "exclude each other" in capsys.readouterr().err


def test_rows_can_be_turned_off_and_lambdas_must_not_be_negative(capsys):
    assert mnist_lenet.parse_args([]).rows == ["filters", "filters-strong", "shapes",
                                               "shapes-strong"]  # the paper's #2-#5
    assert mnist_lenet.parse_args(["--rows"]).rows == []
    with pytest.raises(SystemExit):
        mnist_lenet.parse_args(["--shape-lambda", "-1", "0.1"])
    assert "must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mnist_lenet.parse_args(["--strong-shape-cut", "-0.1"])
    assert "--strong-shape-cut must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mnist_lenet.parse_args(["--shape-cut", "-0.1"])
    assert "--shape-cut must be >= 0" in capsys.readouterr().err
    for flag in ("--strong-shape-ssl-epochs", "--strong-shape-finetune-lr"):
        with pytest.raises(SystemExit):
            mnist_lenet.parse_args([flag, "0"])
        assert f"{flag} must be > 0" in capsys.readouterr().err


def test_the_shapes_strong_epochs_scale_like_the_other_ssl_phases():
    given = {name: None for name in mnist_lenet.EPOCHS}
    counts = cli.epoch_counts(given, 7500, mnist_lenet.EPOCHS, mnist_lenet.QUICK_EPOCHS)
    assert counts["epochs"] == mnist_lenet.EPOCHS["epochs"]  # never past 6
    assert counts["ssl_epochs"] == 8 * mnist_lenet.EPOCHS["ssl_epochs"]
    assert counts["strong_shape_ssl_epochs"] == 8 * mnist_lenet.EPOCHS["strong_shape_ssl_epochs"]
    assert given["ssl_epochs"] is None  # a new dict: what the user gave is left alone
    assert mnist_lenet.parse_args(["--strong-shape-ssl-epochs", "2"]).strong_shape_ssl_epochs == 2


@pytest.mark.slow
def test_the_shapes_strong_row_has_its_own_cut_epochs_and_finetune_rate(tmp_path,
                                                                       no_mnist_anywhere,
                                                                       monkeypatch, capsys):
    rates = []  # the learning rate each phase starts from
    fit = train.Trainer.fit

    def recording(self, model, phase, epochs, lr=None, *rest):
        rates.append((phase, lr or self.sgd.lr))
        return fit(self, model, phase, epochs, lr, *rest)

    monkeypatch.setattr(train.Trainer, "fit", recording)
    out = tmp_path / "run"
    mnist_lenet.main(["--offline", "--timing-seconds", "0", "--out", str(out), "--no-baseline",
                      "--rows", "shapes-strong", "--ssl-epochs", "3", "--finetune-epochs", "1",
                      "--strong-shape-ssl-epochs", "1", "--strong-shape-finetune-lr", "0.007",
                      "--strong-shape-lambda", "0.01", "0.01", "--strong-shape-cut", "0.2"])
    printed = capsys.readouterr().out
    assert "groups with 0 < norm < 0.2 set to exactly zero" in printed
    results = json.loads((out / "results.json").read_text())
    cut = results["rows"][0]["cut"]
    assert cut["threshold"] == 0.2 and 0 < cut["groups_zeroed"]
    assert 1e-3 <= cut["largest_norm_zeroed"] < 0.2  # groups the default 1e-3 cut would keep
    # one prox epoch (its own count, not --ssl-epochs' 3), then one fine-tuning epoch at 0.007
    assert [entry["phase"] for entry in results["history"]] == [
        "SSL shapes-strong (#5)", "SSL shapes-strong (#5) fine-tune"]
    assert rates == [("SSL shapes-strong (#5)", 0.05), ("SSL shapes-strong (#5) fine-tune", 0.007)]


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        mnist_lenet.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--quick", "--data", "--out", "--rows", "--filter-lambda", "--shape-lambda",
                 "--strong-filter-lambda", "--strong-shape-lambda", "--strong-shape-cut",
                 "--shape-cut", "--strong-shape-ssl-epochs", "--strong-shape-finetune-lr",
                 "--cut", "--finetune-epochs", "--backend"):
        assert flag in text


def test_a_row_that_zeroes_everything_is_reported_not_a_crash(tmp_path, no_mnist_anywhere,
                                                             capsys):
    mnist_lenet.main(["--offline", "--out", str(tmp_path), "--no-baseline", "--rows", "shapes",
                      "--ssl-epochs", "1", "--finetune-epochs", "0", "--shape-lambda", "5", "5"])
    printed = capsys.readouterr().out
    assert "note: nothing to compact (layer" in printed and "lower the lambdas" in printed
    row = json.loads((tmp_path / "results.json").read_text())["rows"][0]
    assert row["compacted"] is None and row["columns"] == [0, 0]


class _Captured(Exception):
    pass


@pytest.mark.slow
def test_ssl_rows_can_start_from_the_trained_baseline(tmp_path, no_mnist_anywhere, monkeypatch,
                                                     capsys):
    from minissl.train import checkpoint

    seen = []

    def capture(self, model, *args, **kwargs):  # stop the SSL row where it starts
        seen.append(model.state_dict())
        raise _Captured

    monkeypatch.setattr(train.Trainer, "ssl", capture)
    out = tmp_path / "run"
    with pytest.raises(_Captured):
        mnist_lenet.main(["--offline", "--epochs", "1", "--rows", "filters", "--timing-seconds",
                          "0", "--ssl-from-baseline", "--out", str(out)])
    baseline = checkpoint.finished_weights(out, "baseline")
    for key in baseline:
        np.testing.assert_array_equal(seen[0][key], baseline[key], err_msg=key)
    with pytest.raises(SystemExit):
        mnist_lenet.parse_args(["--no-baseline", "--ssl-from-baseline"])
    assert "which --no-baseline skips" in capsys.readouterr().err
