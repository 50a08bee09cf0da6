"""minissl.train.checkpoint: an interrupted run resumed with --resume ends with the same weights,
bit for bit, as a run that was never interrupted."""

import json

import numpy as np
import pytest

from minissl.experiments import cli, mnist_mlp
from minissl.train import checkpoint, trainer

ARGS = ["--offline", "--timing-seconds", "0", "--epochs", "2", "--ssl-epochs", "3",
        "--finetune-epochs", "2", "--lambda", "0.01", "0.008", "0.006"]
LAST_PHASE = "SSL 1 fine-tune"


def final_state(out):
    with np.load(out / checkpoint.FOLDER / checkpoint._file_name(LAST_PHASE),
                 allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files if key != "meta"}


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, no_mnist_anywhere,
                                                                     monkeypatch, capsys):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    mnist_mlp.main(ARGS + ["--out", str(whole)])

    real_epoch, calls = trainer.train_epoch, []

    def interrupted_epoch(*args, **kwargs):  # Ctrl-C during the 2nd SSL epoch
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_epoch", interrupted_epoch)
    with pytest.raises(SystemExit) as stopped:
        cli.run(lambda: mnist_mlp.main(ARGS + ["--out", str(broken)]))
    assert stopped.value.code == 130
    assert f"--resume {broken}" in capsys.readouterr().err
    monkeypatch.setattr(trainer, "train_epoch", real_epoch)

    cli.run(lambda: mnist_mlp.main(["--resume", str(broken)]))
    printed = capsys.readouterr().out
    assert "baseline: resumed from its checkpoint after epoch 2/2 (finished)" in printed
    assert "SSL 1 (proximal): resumed from its checkpoint after epoch 1/3 (continues)" in printed

    expected, got = final_state(whole), final_state(broken)
    assert sorted(expected) == sorted(got)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    first = json.loads((whole / "results.json").read_text())
    second = json.loads((broken / "results.json").read_text())
    assert second["complete"] is True
    assert [(e["phase"], e["epoch"], e["loss"]) for e in second["history"]] == [
        (e["phase"], e["epoch"], e["loss"]) for e in first["history"]]
    assert [row["error"] for row in second["rows"]] == [row["error"] for row in first["rows"]]


def test_resume_refuses_what_it_cannot_continue(tmp_path, no_mnist_anywhere, capsys):
    with pytest.raises(SystemExit, match="no readable results.json"):
        mnist_mlp.main(["--resume", str(tmp_path / "nothing")])
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "results.json").write_text(
        json.dumps({"experiment": "mnist_mlp", "complete": True, "argv": []}))
    with pytest.raises(SystemExit, match="that run is complete"):
        mnist_mlp.main(["--resume", str(tmp_path / "done")])
    with pytest.raises(SystemExit, match="is 'mnist_mlp', not 'cifar_convnet'"):
        from minissl.experiments import cifar_convnet
        (tmp_path / "done" / "results.json").write_text(
            json.dumps({"experiment": "mnist_mlp", "complete": False, "argv": []}))
        cifar_convnet.main(["--resume", str(tmp_path / "done")])
    with pytest.raises(SystemExit, match="takes no other flags"):
        mnist_mlp.main(["--resume", str(tmp_path / "done"), "--lr", "1"])


def test_a_checkpoint_for_another_schedule_is_refused(tmp_path):
    from minissl import models, optim

    model = models.mlp((4, 3, 2))
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = optim.CosineSchedule(optimizer, total_steps=10)
    saver = checkpoint.PhaseCheckpoints(tmp_path, resume=True)
    saver.save("baseline", 1, 5, model, optimizer, schedule, np.random.default_rng(0), [])
    with pytest.raises(checkpoint.CheckpointError, match="made for 5 epochs of 'baseline', "
                                                         "this run has 7"):
        saver.load("baseline", 7)
    assert checkpoint.PhaseCheckpoints(tmp_path).load("baseline", 5) is None  # not resuming


def test_a_truncated_checkpoint_is_one_line_naming_it(tmp_path, no_mnist_anywhere, capsys):
    """A full disk or a crash in the copy leaves half a file: --resume says which and what
    to do, without a traceback."""
    out = tmp_path / "run"
    mnist_mlp.main(ARGS + ["--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    results["complete"] = False  # as if the run had stopped after its checkpoints
    (out / "results.json").write_text(json.dumps(results))
    path = out / checkpoint.FOLDER / checkpoint._file_name("baseline")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SystemExit) as stopped:
        cli.run(lambda: mnist_mlp.main(["--resume", str(out)]))
    message = str(stopped.value.code)
    assert str(path) in message and "cannot be read" in message
    assert "delete it to retrain that phase" in message
    assert not (out / ".minissl-run.lock").exists()  # the folder is free again
