import json

import pytest

from demos import mnist_mlp


@pytest.mark.slow
def test_quick_run_on_the_bundled_sample_learns_and_writes_results(tmp_path, no_mnist_anywhere, capsys):
    out = tmp_path / "run"
    mnist_mlp.main(["--quick", "--offline", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "bundled 10,000-digit sample" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "mnist_mlp"
    assert results["dataset"]["name"] == "MNIST sample"
    assert (results["dataset"]["n_train"], results["dataset"]["n_test"]) == (8000, 2000)
    baseline = results["rows"][0]
    assert baseline["name"] == "baseline" and baseline["neurons"] == [784, 500, 300, 10]
    assert 0.0 <= baseline["error"] < 0.10
    assert len(results["history"]) == results["epochs"]
    assert not list(out.glob("*.part"))


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        mnist_mlp.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--epochs", "--batch-size", "--lr", "--momentum", "--weight-decay",
                 "--seed", "--out", "--quick", "--offline"):
        assert flag in text


def test_nonpositive_flags_are_rejected(capsys):
    with pytest.raises(SystemExit):
        mnist_mlp.parse_args(["--epochs", "0"])
    assert "--epochs must be > 0" in capsys.readouterr().err
