"""The ConvNet experiment (minissl.experiments.cifar_convnet) end to end on random CIFAR-shaped
images, and its flags."""

import json

import numpy as np
import pytest

import minissl
from minissl import cifar, data, models, optim, train, zoo
from minissl.experiments import cifar_convnet, cli
from minissl.train import checkpoint


@pytest.mark.slow
def test_synthetic_run_trains_prunes_compacts_and_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    cifar_convnet.main(["--synthetic", "200", "--timing-seconds", "0", "--out", str(out),
                        "--epochs", "1", "--ssl-epochs", "2", "--finetune-epochs", "1",
                        "--batch-size", "32", "--ssl-scales", "1", "--cut", "0.3", "--lr", "0.001",
                        "--finetune-lr", "0.001"])
    # at a small learning rate conv2's columns keep norms near their He initialization (median
    # 0.28), so the cut alone empties about half of them
    printed = capsys.readouterr().out
    assert "errors mean nothing" in printed
    assert printed.count("same predictions on all 40 test images") == 2
    assert "paper #2" in printed and "17.90%" in printed
    results = json.loads((out / "results.json").read_text())
    baseline, sparse = results["rows"]
    assert baseline["row_sparsity"] == [0.0, 0.0, 0.0]
    assert baseline["flops_pct"] == [100.0, 100.0, 100.0]
    assert sparse["column_sparsity"][1] > 20 and sparse["cut"]["groups_zeroed"] > 100
    assert sparse["flops_pct"][1] < 80
    assert sparse["compacted"]["params"][1] < sparse["compacted"]["params"][0]
    assert sparse["compacted"]["same_predictions"] == [40, 40]
    assert 0.28 < sparse["cut"]["largest_norm_zeroed"] < 0.3
    assert len(sparse["speedup"]) == 3 and sparse["whole_speedup"] > 0
    kinds = {(rule["layer"], rule["kind"]) for rule in sparse["rules"]}
    assert kinds == {("0", "filter"), ("3", "filter"), ("3", "shape"), ("6", "filter"),
                     ("6", "shape")}  # conv1's column lambda is 0 by default
    assert len(results["history"]) == 1 + 2 + 1
    assert results["dataset"]["n_train"] == 160
    assert (out / "filters.png").stat().st_size > 0 and not list(out.glob("*.part*"))


def test_help_states_the_measured_durations(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cifar_convnet.main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "--quick" in printed and "40-60 minutes" in printed and "--epochs 130" in printed


@pytest.mark.parametrize("flags, message", [
    (["--momentum", "-5"], "--momentum must be >= 0"),
    (["--columns-lambda", "0", "-1", "0"], "must be >= 0"),
    (["--synthetic", "5"], "at least 20 images"),
])
def test_bad_flags_stop_before_any_data_is_read(flags, message, capsys):
    with pytest.raises(SystemExit):
        cifar_convnet.parse_args(flags)
    assert message in capsys.readouterr().err


def test_missing_cifar_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISSL_DATA", str(tmp_path))
    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path / "home")
    with pytest.raises(SystemExit, match="CIFAR-10 .*not found; looked in"):
        cifar_convnet.main(["--out", str(tmp_path / "run")])


@pytest.mark.slow
def test_ssl_rows_start_from_the_finished_baseline(tmp_path, ssl_starts):
    first = tmp_path / "first"
    quick = ["--synthetic", "100", "--timing-seconds", "0", "--epochs", "1", "--batch-size", "32",
             "--augment", "flip"]
    cifar_convnet.main(quick + ["--ssl-scales", "--out", str(first)])
    baseline = checkpoint.finished_weights(first, "baseline")
    fresh = models.cifar_convnet(seed=0).state_dict()
    assert any(not np.array_equal(baseline[key], fresh[key]) for key in fresh)

    with pytest.raises(ssl_starts.Stop):  # from an earlier run's baseline (DIR)
        cifar_convnet.main(quick + ["--no-baseline", "--ssl-scales", "1", "--ssl-from-baseline",
                                    str(first), "--out", str(tmp_path / "second")])
    for key in baseline:
        np.testing.assert_array_equal(ssl_starts[0][key], baseline[key], err_msg=key)

    third = tmp_path / "third"  # from the baseline this run trains
    with pytest.raises(ssl_starts.Stop):
        cifar_convnet.main(quick + ["--ssl-scales", "1", "--ssl-from-baseline", "--out",
                                    str(third)])
    own = checkpoint.finished_weights(third, "baseline")
    for key in own:
        np.testing.assert_array_equal(ssl_starts[1][key], own[key], err_msg=key)


def test_ssl_from_baseline_refuses_what_it_cannot_start_from(tmp_path, capsys):
    with pytest.raises(SystemExit, match="holds no 'baseline' checkpoint"):
        cifar_convnet.main(["--synthetic", "100", "--no-baseline", "--ssl-from-baseline",
                            str(tmp_path / "nothing"), "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit):
        cifar_convnet.parse_args(["--no-baseline", "--ssl-from-baseline"])
    assert "which --no-baseline skips" in capsys.readouterr().err
    # a baseline checkpoint written after epoch 1 of 2: not finished
    model = models.cifar_convnet(seed=0)
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    schedule = optim.CosineSchedule(optimizer, total_steps=10)
    checkpoint.PhaseCheckpoints(tmp_path / "half").save(
        "baseline", 1, 2, model, optimizer, schedule, np.random.default_rng(0), [])
    with pytest.raises(checkpoint.CheckpointError, match="stopped after epoch 1 of 2"):
        checkpoint.finished_weights(tmp_path / "half", "baseline")


def test_ssl_rows_start_from_a_saved_model_file_and_refuse_one_that_does_not_fit(
        tmp_path, ssl_starts):
    trained = models.cifar_convnet(seed=5)  # any weights other than a fresh seed-0 model's
    path = minissl.save(trained, tmp_path / "trained.npz")
    quick = ["--synthetic", "100", "--timing-seconds", "0", "--no-baseline", "--ssl-scales", "1"]
    with pytest.raises(ssl_starts.Stop):
        cifar_convnet.main(quick + ["--ssl-from-baseline", str(path), "--out",
                                    str(tmp_path / "run")])
    for key, value in trained.state_dict().items():
        np.testing.assert_array_equal(ssl_starts[0][key], value, err_msg=key)
    other = minissl.save(models.lenet(seed=0), tmp_path / "lenet.npz")
    with pytest.raises(SystemExit, match="do not fit this experiment's model"):
        cifar_convnet.main(quick + ["--ssl-from-baseline", str(other), "--out",
                                    str(tmp_path / "run2")])
    with pytest.raises(SystemExit, match="no zoo entry 'cifar_convnet/nothing'"):
        cifar_convnet.main(quick + ["--ssl-from-baseline", "zoo:cifar_convnet/nothing", "--out",
                                    str(tmp_path / "run3")])


@pytest.mark.slow
def test_ssl_phases_from_an_earlier_run_are_only_cut_and_fine_tuned(tmp_path, capsys):
    quick = ["--synthetic", "100", "--timing-seconds", "0", "--batch-size", "32", "--augment",
             "flip", "--no-baseline", "--ssl-epochs", "2", "--lr", "0.001", "--finetune-lr",
             "0.001", "--cut", "0.3"]
    first, second = tmp_path / "first", tmp_path / "second"
    cifar_convnet.main(quick + ["--ssl-scales", "1", "--finetune-epochs", "1", "--out", str(first)])
    capsys.readouterr()
    cifar_convnet.main(quick + ["--ssl-scales", "1", "--finetune-epochs", "2", "--out", str(second),
                                "--ssl-phases-from", str(first)])
    assert f"SSL x1: prox epochs not trained; weights from the finished phase in {first}" in (
        capsys.readouterr().out)
    earlier = json.loads((first / "results.json").read_text())
    later = json.loads((second / "results.json").read_text())
    # the same weights before the same cut: the same groups go
    assert later["rows"][0]["cut"] == earlier["rows"][0]["cut"]
    assert earlier["rows"][0]["cut"]["groups_zeroed"] > 0
    assert [epoch["phase"] for epoch in later["history"]] == ["SSL x1 fine-tune"] * 2

    with pytest.raises(SystemExit, match="holds no 'SSL x2' checkpoint"):
        cifar_convnet.main(quick + ["--ssl-scales", "2", "--out", str(tmp_path / "third"),
                                    "--ssl-phases-from", str(first)])
    with pytest.raises(SystemExit):
        cifar_convnet.parse_args(["--ssl-phases-from", str(tmp_path / "nothing")])
    assert "no checkpoints folder there" in capsys.readouterr().err


def test_from_zoo_evaluates_the_stored_rows_and_trains_nothing(tmp_path, monkeypatch, capsys):
    try:
        cifar.cifar10(None, download=False)
    except data.DataError:
        pytest.skip("CIFAR-10 is not on this machine (set MINISSL_DATA)")
    split, _ = cli.load_cifar_split(None, False, None, 0, False, None)
    model = models.cifar_convnet(seed=3)
    model[3].weight.data[:8] = 0  # conv2 filters: a compactable row
    folder = tmp_path / "zoo" / "cifar_convnet"
    folder.mkdir(parents=True)
    path = minissl.save(model, folder / "row2.npz")
    error = train.error_rate(model, split[2], split[3])
    (folder / "row2.json").write_text(json.dumps({
        "row": "SSL x1", "error": error, "command": "made by a test", "commit": "0" * 40,
        "sha256": zoo.sha256(path)}))
    monkeypatch.setattr(zoo, "FOLDER", tmp_path / "zoo")
    monkeypatch.setattr(train.Trainer, "fit", lambda *args, **kwargs: pytest.fail("trained"))
    out = tmp_path / "run"
    cifar_convnet.main(["--from-zoo", "--timing-seconds", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "the zoo holds no baseline, row3 row of cifar_convnet yet" in printed
    assert f"test error {error:.2%}, the same as the zoo's record" in printed
    assert "zoo #2" in printed and "same predictions on all 10,000 test images" in printed
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    assert row["zoo"]["entry"] == "cifar_convnet/row2" and row["error"] == error
    assert row["filters"][1] == 24 and results["history"] == []
    with pytest.raises(SystemExit):
        cifar_convnet.parse_args(["--from-zoo", "--quick"])
    assert "drop --quick" in capsys.readouterr().err


def test_quick_starts_the_ssl_rows_from_the_zoo_baseline_when_it_holds_one(
        tmp_path, monkeypatch, ssl_starts, capsys):
    try:
        cifar.cifar10(None, download=False)
    except data.DataError:
        pytest.skip("CIFAR-10 is not on this machine (set MINISSL_DATA)")
    stored = models.cifar_convnet(seed=7)
    folder = tmp_path / "zoo" / "cifar_convnet"
    folder.mkdir(parents=True)
    path = minissl.save(stored, folder / "baseline.npz")
    statistics = {"mean": [0.5, 0.45, 0.4], "std": [0.25, 0.25, 0.25]}  # not the subset's
    (folder / "baseline.json").write_text(json.dumps({
        "row": "baseline", "error": 0.9, "command": "made by a test", "commit": "0" * 40,
        "dataset": statistics, "sha256": zoo.sha256(path)}))
    monkeypatch.setattr(zoo, "FOLDER", tmp_path / "zoo")
    monkeypatch.setattr(cifar_convnet, "QUICK_TRAIN", 60)
    monkeypatch.setattr(cifar_convnet, "QUICK_TEST", 40)
    monkeypatch.setattr(train.Trainer, "fit", lambda *args, **kwargs: pytest.fail("trained"))
    out = tmp_path / "run"
    with pytest.raises(ssl_starts.Stop):
        cifar_convnet.main(["--quick", "--timing-seconds", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "the baseline is the zoo's cifar_convnet/baseline" in printed
    for key, value in stored.state_dict().items():  # the SSL row starts from the zoo's weights
        np.testing.assert_array_equal(ssl_starts[0][key], value, err_msg=key)
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    assert row["name"] == "baseline (zoo)" and results["history"] == []
    assert results["dataset"]["mean"] == pytest.approx(statistics["mean"])  # the zoo's inputs
    args = cifar_convnet.parse_args(["--quick"])
    assert args.quick_from_zoo and args.columns_lambda == list(cifar_convnet.QUICK_COLUMN_LAMBDAS)
    assert not cifar_convnet.parse_args(["--quick", "--ssl-from-baseline", str(path)]).quick_from_zoo
    assert cifar_convnet.parse_args(["--quick", "--columns-lambda", "0", "0.1", "0"]
                                    ).columns_lambda == [0, 0.1, 0]
    assert not cifar_convnet.parse_args([]).quick_from_zoo
    assert cifar_convnet.parse_args([]).columns_lambda == list(cifar_convnet.DEFAULT_COLUMN_LAMBDAS)
