"""minissl.train.html_report: the run report is one self-contained page that shows the table,
the epochs, the group norms under the proximal step, the cut and the compaction, says when a
run was interrupted or a row diverged, and opens in a real browser without a console error."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from minissl import models, ssl
from minissl.experiments import mnist_mlp
from minissl.ssl import GroupKind, GroupRule
from minissl.train import html_report


def test_group_norm_histograms_count_exact_zeros_apart_and_bin_the_rest_by_decade():
    model = models.mlp(seed=0)
    weight = model[0].weight.data  # NEURON_IN groups: the columns of the first layer
    weight[:, :100] = 0
    weight[:, 100:110] *= 1e-9 / np.linalg.norm(weight[:, 100:110], axis=0)  # below the bins
    weight[:, 110:120] *= 0.05 / np.linalg.norm(weight[:, 110:120], axis=0)  # 10**-1.3
    lasso = ssl.GroupLasso(model, ssl.SSLConfig([GroupRule("0", GroupKind.NEURON_IN, 0.1)]))
    (summary,) = lasso.norm_histograms()
    low, high, bins = ssl.NORM_BINS
    assert summary["groups"] == 784 and summary["zero"] == 100
    assert sum(summary["counts"]) == 684 and len(summary["counts"]) == bins
    assert summary["counts"][0] == 10  # nonzero norms below 1e-6 counted in the first bin
    assert summary["counts"][int((np.log10(0.05) - low) / ((high - low) / bins))] >= 10
    assert lasso.hold_zeros().norm_histograms() == [summary]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """A short MLP run on the bundled sample: one SSL row with its prox phase, the cut and
    fine-tuning."""
    folder = tmp_path_factory.mktemp("report")
    out = folder / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINISSL_REPORT", "1")  # as outside the tests (conftest turns reports off)
        patch.delenv("MINISSL_DATA", raising=False)  # the bundled sample: a run of seconds
        patch.setenv("HOME", str(folder / "home"))
        mnist_mlp.main(["--offline", "--out", str(out), "--epochs", "1", "--ssl-epochs", "3",
                        "--finetune-epochs", "1", "--lambda", "0.02", "0.02", "0.02",
                        "--timing-seconds", "0"])
    return out


def test_a_run_writes_one_self_contained_report_with_the_group_lasso_at_work(mlp_run):
    page = (mlp_run / "report.html").read_text()
    results = json.loads((mlp_run / "results.json").read_text())
    assert len(page.encode()) < 3 * 2**20
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing outside the file
    assert "http://" not in page and "https://" not in page
    for text in ("complete", "paper SSL #2", "The group lasso at work", "The cut after this phase",
                 "Same predictions as the sparse model", results["run"]["command"],
                 results["run"]["commit"] or "unknown"):
        assert text in page, text
    assert page.count("data:image/png;base64,") >= 3  # curves, group norms, the run's figure
    prox = [epoch for epoch in results["history"] if epoch["phase"] == "SSL 1 (proximal)"]
    assert len(prox) == 3 and all(len(epoch["group_norms"]) == 3 for epoch in prox)
    zeros = [sum(s["zero"] for s in epoch["group_norms"]) for epoch in prox]
    assert zeros[-1] > 0 and zeros == sorted(zeros)  # the prox step makes exact zeros, and keeps them
    assert "Exactly zero after epoch 3: layer 0 neuron_in" in page


def test_no_report_is_written_under_minissl_report_0(tmp_path, no_mnist_anywhere):
    mnist_mlp.main(["--offline", "--out", str(tmp_path / "run"), "--epochs", "1",
                    "--ssl-epochs", "1", "--finetune-epochs", "0", "--lambda", "0.02", "0", "0",
                    "--timing-seconds", "0"])  # the suite runs under MINISSL_REPORT=0
    assert (tmp_path / "run" / "results.json").exists()
    assert not (tmp_path / "run" / "report.html").exists()


def test_the_report_is_rebuilt_from_results_json_alone_and_says_what_is_unfinished(
        mlp_run, tmp_path, capsys):
    results = json.loads((mlp_run / "results.json").read_text())
    results.update(complete=False, interrupted=True, stopped_by="SIGTERM")
    results["rows"] = results["rows"][:1] + [{"name": "SSL 1", "diverged": "the loss became nan"}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    html_report.main([str(tmp_path)])
    page = (tmp_path / "report.html").read_text()
    assert "interrupted (SIGTERM)" in page and "diverged: SSL 1" in page
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="results.json cannot be read"):
        html_report.main([str(tmp_path / "missing")])
    assert "before its first epoch" in html_report.render({"experiment": "x", "rows": []})


def test_depth_groups_are_drawn_as_one_line_per_branch_in_one_panel():
    model = models.resnet_cifar(8, seed=0)
    rules = [GroupRule(f"{index}.branch", GroupKind.DEPTH, 0.1) for index in (3, 4, 5)]
    lasso = ssl.GroupLasso(model, ssl.SSLConfig(rules))
    summaries = lasso.norm_histograms()
    assert [len(summary["norms"]) for summary in summaries] == [1, 1, 1]  # a few groups: kept
    assert summaries[0]["norms"][0] == pytest.approx(float(lasso.group_sets[0].norms()))
    assert "norms" not in ssl.GroupLasso(models.mlp(seed=0), ssl.SSLConfig(
        [GroupRule("0", GroupKind.NEURON_IN, 0.1)])).norm_histograms()[0]  # 784 groups: not
    history = []
    for epoch in (1, 2, 3):  # the first branch shrinks to exactly zero
        epoch_sets = [dict(summary, norms=[summary["norms"][0] / 10 ** (2 * epoch)])
                      if index == 0 else summary for index, summary in enumerate(summaries)]
        if epoch == 3:
            epoch_sets[0] = dict(epoch_sets[0], norms=[0.0], zero=1)
        history.append({"phase": "SSL-ResNet", "epoch": epoch, "loss": 1.0, "train_error": 0.5,
                        "test_error": 0.5, "seconds": 1.0, "group_norms": epoch_sets})
    page = html_report.render({"experiment": "cifar_resnet", "rows": [], "history": history})
    section = page[page.index("The group lasso at work"):]
    assert "One line per group" in section
    assert section[:section.index("Exactly zero after epoch 3")].count("data:image/png") == 1
    assert "layer 3.branch depth 1/1" in section


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Chromium is not installed (apt-get install chromium)")
def test_the_report_opens_in_headless_chromium_without_a_console_error(mlp_run, tmp_path):
    shot = tmp_path / "report.png"
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--window-size=1200,2400",
                           f"--screenshot={shot}", (mlp_run / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10000, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
