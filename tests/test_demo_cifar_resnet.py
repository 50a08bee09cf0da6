"""The ResNet experiment (minissl.experiments.cifar_resnet) end to end on random CIFAR-shaped
images, and its flags."""

import json

import numpy as np
import pytest

from minissl.experiments import cifar_resnet


@pytest.mark.slow
def test_synthetic_run_removes_branches_compacts_and_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    # At a small learning rate the branches keep norms near their initialization: about 10 in
    # the first stage, 14 and more in the others, so a cut at 12 removes exactly stage 1.
    cifar_resnet.main(["--synthetic", "120", "--timing-seconds", "0", "--out", str(out),
                       "--epochs", "1", "--ssl-epochs", "1", "--finetune-epochs", "1",
                       "--batch-size", "32", "--lr", "0.001", "--finetune-lr", "0.001",
                       "--cut", "12", "--no-baseline"])
    printed = capsys.readouterr().out
    assert "same predictions on all 24 test images" in printed
    assert "paper SSL-ResNet-14" in printed and "smallest branch norm per stage" in printed
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    assert row["name"] == "SSL-ResNet-14" and row["layers_per_stage"] == [0, 6, 6]
    assert row["cut"]["groups_zeroed"] == 3
    assert row["compacted"]["params"][1] < row["compacted"]["params"][0]
    assert all(rule["kind"] == "depth" and rule["layer"].endswith(".branch")
               for rule in row["rules"]) and len(row["rules"]) == 9
    assert (out / "depth.png").stat().st_size > 0 and not list(out.glob("*.part*"))


def test_branch_norms_and_the_epoch_line_follow_the_branches():
    from minissl import models

    model = models.resnet_cifar(20, seed=0)
    norms = cifar_resnet.branch_norms(model)
    assert len(norms) == 9 and 9 < norms[0] < 11 and 18 < norms[-1] < 21  # stage 1 / stage 3
    for parameter in dict(cifar_resnet.blocks_of(model))["4"].branch.parameters():
        parameter.data[...] = 0
    fields, text = cifar_resnet.describe_depth(model)
    assert fields["layers_per_stage"] == [4, 6, 6] and fields["branch_norms"][1] == 0
    assert text.endswith(f"smallest branch norm per stage 0/{min(norms[3:6]):.3g}/"
                         f"{min(norms[6:]):.3g}")
    assert fields["below_cut"] == 0
    for parameter in dict(cifar_resnet.blocks_of(model))["3"].branch.parameters():
        parameter.data *= 1e-9  # held near zero by the prox step, not yet cut
    fields, text = cifar_resnet.describe_depth(model, cut=0.05)
    assert fields["layers_per_stage"] == [4, 6, 6] and fields["below_cut"] == 1
    assert text.endswith("(1 below the cut 0.05)")


def test_help_states_the_measured_durations(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cifar_resnet.main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "--depth" in printed and "--quick took 202 s" in printed
    assert cifar_resnet.parse_args(["--quick"]).depth_lambda == cifar_resnet.QUICK_DEPTH_LAMBDA
    assert cifar_resnet.parse_args([]).depth_lambda == cifar_resnet.DEFAULT_DEPTH_LAMBDA
    assert cifar_resnet.parse_args(["--quick", "--depth-lambda", "0.5"]).depth_lambda == 0.5
    assert "--epochs 164" in printed  # the paper's full schedule


@pytest.mark.parametrize("flags, message", [
    (["--depth", "21"], "--depth must be 6n + 2"),
    (["--depth-lambda", "-1"], "must be >= 0"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--prox-lr-floor", "-0.01"], "--prox-lr-floor must be >= 0"),
])
def test_bad_flags_stop_before_any_data_is_read(flags, message, capsys):
    with pytest.raises(SystemExit):
        cifar_resnet.parse_args(flags)
    assert message in capsys.readouterr().err


def test_prox_lr_floor_reaches_the_group_lasso(monkeypatch, tmp_path):
    from minissl import train

    class Seen(Exception):
        pass

    def stop_at_the_schedule(self, model, lasso, *args, **kwargs):
        raise Seen(lasso.config.min_prox_lr)

    monkeypatch.setattr(train.Trainer, "ssl", stop_at_the_schedule)
    for index, (flags, floor) in enumerate((([], cifar_resnet.DEFAULT_PROX_LR_FLOOR),
                                            (["--prox-lr-floor", "0"], 0.0),
                                            (["--prox-lr-floor", "0.02"], 0.02))):
        with pytest.raises(Seen) as seen:
            cifar_resnet.main(["--depth", "8", "--synthetic", "40", "--no-baseline", "--out",
                               str(tmp_path / str(index)), *flags])
        assert seen.value.args[0] == floor


def test_the_ssl_row_starts_from_a_saved_resnet_and_refuses_one_of_another_depth(
        tmp_path, ssl_starts):
    import minissl
    from minissl import models

    trained = models.resnet_cifar(8, seed=5)  # any weights other than a fresh seed-0 model's
    path = minissl.save(trained, tmp_path / "resnet8.npz")
    quick = ["--synthetic", "40", "--timing-seconds", "0", "--no-baseline", "--depth", "8"]
    with pytest.raises(ssl_starts.Stop):
        cifar_resnet.main(quick + ["--ssl-from-baseline", str(path), "--out",
                                   str(tmp_path / "run")])
    for key, value in trained.state_dict().items():
        np.testing.assert_array_equal(ssl_starts[0][key], value, err_msg=key)
    with pytest.raises(SystemExit, match="do not fit this experiment's model"):
        cifar_resnet.main(["--synthetic", "40", "--no-baseline", "--depth", "20",
                           "--ssl-from-baseline", str(path), "--out", str(tmp_path / "run2")])


def test_from_zoo_measures_the_stored_rows_and_trains_nothing(tmp_path, monkeypatch, capsys):
    import minissl
    from minissl import cifar, data, models, train, zoo
    try:
        cifar.cifar10(None, download=False)
    except data.DataError:
        pytest.skip("CIFAR-10 is not on this machine (set MINISSL_DATA)")
    model = models.resnet_cifar(8, seed=3).eval()
    for parameter in dict(cifar_resnet.blocks_of(model))["4"].branch.parameters():
        parameter.data[...] = 0  # the second stage's only branch: a removable block
    folder = tmp_path / "zoo" / "cifar_resnet"
    folder.mkdir(parents=True)
    path = minissl.save(model, folder / "ssl_resnet8.npz")
    # a recorded error the weights do not have: the demo must say so, not print the record
    (folder / "ssl_resnet8.json").write_text(json.dumps({
        "row": "SSL-ResNet-6", "error": 0.125, "command": "made by a test", "commit": "0" * 40,
        "sha256": zoo.sha256(path)}))
    monkeypatch.setattr(zoo, "FOLDER", tmp_path / "zoo")
    monkeypatch.setattr(train.Trainer, "fit", lambda *args, **kwargs: pytest.fail("trained"))
    monkeypatch.setattr(train.Trainer, "ssl", lambda *args, **kwargs: pytest.fail("trained"))
    out = tmp_path / "run"
    cifar_resnet.main(["--from-zoo", "--depth", "8", "--timing-seconds", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "the zoo holds no resnet8 row of cifar_resnet yet" in printed
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    assert f"test error {row['error']:.2%}, NOT the same as the zoo's record (12.50%)" in printed
    assert "same predictions on all 10,000 test images" in printed
    assert row["zoo"] == {"entry": "cifar_resnet/ssl_resnet8", "recorded_error": 0.125,
                          "command": "made by a test", "commit": "0" * 40}
    assert 0.5 < row["error"] < 1  # untrained weights
    assert row["name"] == "SSL-ResNet-6 (zoo)" and row["layers_per_stage"] == [2, 0, 2]
    assert results["history"] == []
    with pytest.raises(SystemExit):
        cifar_resnet.parse_args(["--from-zoo", "--synthetic", "100"])
    assert "drop --synthetic" in capsys.readouterr().err
