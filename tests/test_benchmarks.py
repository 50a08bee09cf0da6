"""The benchmarks run, write the JSON they promise, and document their flags."""

import json

import pytest

from minissl import models
from minissl.compact import compact, plan_compaction
from benchmarks import (conv_chunks, conv_tiles, filter_counts, gpu_epoch, input_pipeline, kernels,
                        memory_reuse, profile_step, speedup, threads, train_throughput)


@pytest.mark.parametrize("module", [kernels, speedup, threads, train_throughput, profile_step,
                                    input_pipeline, memory_reuse, gpu_epoch, conv_tiles,
                                    conv_chunks, filter_counts])
def test_every_benchmark_has_help(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "--json" in capsys.readouterr().out


def test_conv_chunks_times_both_settings_and_restores_the_workers(tmp_path, capsys):
    from minissl import workers

    path = tmp_path / "chunks.json"
    conv_chunks.main(["--models", "convnet", "--batch", "4", "--rounds", "2", "--steps", "1",
                      "--json", str(path)])
    row = json.loads(path.read_text())["rows"][0]
    assert all(len(times) == 2 and min(times) > 0 for times in row["ms_per_round"].values())
    assert row["ratio"] > 0 and "side by side" in capsys.readouterr().out
    assert workers._pool["enabled"]


def test_conv_tiles_times_every_shape_and_says_what_the_cost_model_picks(tmp_path, capsys):
    path = tmp_path / "tiles.json"
    conv_tiles.main(["--batch", "2", "--repeats", "2", "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert [row["shape"] for row in rows] == [shape[0] for shape in conv_tiles.SHAPES]
    assert all(row["gemm_ms"] > 0 and row["tiles_ms"] > 0 and row["shifted_ms"] > 0
               for row in rows)
    assert all(row["fastest"] in ("gemm", "tiles", "shifted") for row in rows)
    picks = {row["shape"]: row["pick"] for row in rows}
    assert picks["LeNet #5 conv2"] == "shifted" and picks["ConvNet conv3"] == "shifted"
    assert picks["ConvNet conv2"] == "shifted" and picks["LeNet #5 conv1"] == "shifted"
    assert all(row["pick_over_fastest"] >= 1 for row in rows)
    assert "gemm/shifted" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::minissl.data.MnistFallbackWarning")
def test_speedup_mlp_writes_its_json_schema(tmp_path, capsys):
    path = tmp_path / "speedup.json"
    speedup.main(["--paper", "mlp", "--batch", "8", "--repeats", "2", "--min-seconds", "0",
                  "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert [row["name"] for row in rows] == ["#2", "#3", "#2", "#3"]  # batch 8, then batch 1
    first = rows[0]
    assert set(first) >= {"name", "layers", "whole_speedup"}
    assert [layer["layer"] for layer in first["layers"]] == ["fc1", "fc2", "fc3"]
    assert [layer["module"] for layer in first["layers"]] == ["0", "2", "4"]
    assert set(first["layers"][0]) >= {"layer", "flop_pct", "speedup", "ideal_speedup",
                                       "csr_speedup"}
    assert first["layers"][0]["flop_pct"] == pytest.approx(100 * 469 * 294 / (784 * 500))
    agreed, total = first["same_predictions"].split("/")
    assert agreed == total
    assert "whole network" in capsys.readouterr().out


def test_lenet_structures_have_the_papers_kept_filters_and_columns():
    model, _, _ = speedup.lenet_structure(speedup.LENET_ROWS[1], seed=0)  # #3: 3 and 12 filters
    assert int((abs(model[0].weight.data).sum(axis=(1, 2, 3)) > 0).sum()) == 3
    assert int((abs(model[2].weight.data).sum(axis=(1, 2, 3)) > 0).sum()) == 12
    # Table 2 read right: #4 keeps 2 conv1 filters x 21 columns and 41 conv2 columns on those 2
    # channels (FLOP 8.4% / 8.2%); #5 keeps 1 filter x 7 columns and 14 columns on 1 channel
    for row, filters, columns, flop_pct in ((speedup.LENET_ROWS[2], 2, (21, 41), (8.4, 8.2)),
                                            (speedup.LENET_ROWS[3], 1, (7, 14), (1.4, 2.8))):
        model, input_shape, _ = speedup.lenet_structure(row, seed=0)
        conv1, conv2 = model[0].weight.data, model[2].weight.data
        assert int((abs(conv1).sum(axis=(1, 2, 3)) > 0).sum()) == filters
        for weight, kept in ((conv1, columns[0]), (conv2, columns[1])):
            assert int((abs(weight.reshape(weight.shape[0], -1)).sum(axis=0) > 0).sum()) == kept
        assert int((abs(conv2).sum(axis=(0, 2, 3)) > 0).sum()) == filters  # channels read
        _, plan = compact(model, input_shape)
        assert [round(100 * layer.flops_after / layer.flops_before, 1)
                for layer in plan.layers[:2]] == list(flop_pct)



def test_alexnet_sweep_zeroes_what_it_says_and_writes_points_and_a_figure(tmp_path, capsys,
                                                                       monkeypatch):
    from benchmarks import alexnet

    # small stand-ins for the five layers: the same code path, a fraction of the time
    monkeypatch.setattr(alexnet, "LAYERS", [("conv1", 3, 16, 5, 2, 0, 31),
                                            ("conv2", 16, 24, 3, 1, 1, 13)])
    path, picture = tmp_path / "alexnet.json", tmp_path / "alexnet.png"
    speedup.main(["--paper", "alexnet", "--sparsities", "0", "0.75", "--repeats", "2",
                  "--min-seconds", "0", "--json", str(path), "--figure", str(picture)])
    points = json.loads(path.read_text())["points"]
    assert len(points) == 2 * 2 * 2  # kinds x layers x sparsities
    by_key = {(p["kind"], p["layer"], p["sparsity"]): p for p in points}
    assert by_key[("rows", "conv2", 0.0)]["flop_pct"] == pytest.approx(100.0)
    assert by_key[("rows", "conv2", 0.75)]["flop_pct"] == pytest.approx(25.0)      # 6 of 24
    assert by_key[("columns", "conv2", 0.75)]["flop_pct"] == pytest.approx(100 * 36 / 144)
    assert all(p["speedup"] > 0 and p["csr_speedup"] > 0 for p in points)
    printed = capsys.readouterr().out
    assert "average layer-wise speedup" in printed and "5.1x" in printed
    assert picture.stat().st_size > 0


def test_profile_step_accounts_for_every_op(tmp_path, capsys):
    """The per-op profile of a LeNet step names the convolution both ways and writes JSON."""
    path = tmp_path / "profile.json"
    profile_step.main(["--model", "lenet", "--batch", "8", "--steps", "1", "--warmup", "1",
                       "--json", str(path)])
    result = json.loads(path.read_text())
    keys = {(row["op"], row["direction"]) for row in result["rows"]}
    assert {("Conv2d", "forward"), ("Conv2d", "backward"), ("MaxPool2d", "backward")} <= keys
    assert 0 < sum(row["ms_per_step"] for row in result["rows"]) <= result["ms_per_step"]
    assert "outside ops" in capsys.readouterr().out


def test_profile_step_counts_the_direct_methods_flops(tmp_path, capsys, monkeypatch):
    """The FLOPs of a LeNet step at batch 8, by hand (2 per multiply-add): forward conv1
    8*20*24*24*25, conv2 8*50*8*8*500, fc1 8*500*800, fc2 8*10*500; backward the same for
    each gradient computed (conv1 needs no gradient to its input, so only its weights'), and
    the rates are shares of the measured peak (faked here: the real one takes a second)."""
    monkeypatch.setattr(profile_step, "measured_peak", lambda: 1e11)
    monkeypatch.setattr(profile_step, "torch_peak", lambda: (5e10, "AVX2"))
    path = tmp_path / "profile.json"
    profile_step.main(["--model", "lenet", "--batch", "8", "--steps", "1", "--warmup", "1",
                       "--json", str(path)])
    result = json.loads(path.read_text())
    gflop = {(row["op"], row["direction"]): row["gflop_per_step"] for row in result["rows"]}
    conv1, conv2 = 2 * 8 * 20 * 576 * 25, 2 * 8 * 50 * 64 * 500
    fc1, fc2 = 2 * 8 * 500 * 800, 2 * 8 * 10 * 500
    assert gflop[("Conv2d", "forward")] * 1e9 == pytest.approx(conv1 + conv2)
    assert gflop[("Conv2d", "backward")] * 1e9 == pytest.approx(conv1 + 2 * conv2)
    assert gflop[("Linear", "forward")] * 1e9 == pytest.approx(fc1 + fc2)
    assert gflop[("Linear", "backward")] * 1e9 == pytest.approx(2 * (fc1 + fc2))
    assert gflop[("MaxPool2d", "forward")] == 0 and result["peak_gflops"] == 100
    plan = plan_compaction(models.lenet(), (1, 28, 28))  # the tables' FLOP counter, per image
    assert (gflop[("Conv2d", "forward")] + gflop[("Linear", "forward")]) * 1e9 == pytest.approx(
        8 * plan.flops_before)
    printed = capsys.readouterr().out
    assert "peak: 100.0 GFLOP/s" in printed and "of the peak" in printed
    assert "50.0 GFLOP/s for the same product in PyTorch (CPU capability AVX2)" in printed


def test_the_measured_peak_is_a_positive_rate():
    assert 0 < profile_step.measured_peak(size=64, repeats=2) < float("inf")


def test_pytorchs_peak_is_a_positive_rate_where_pytorch_is_installed():
    pytest.importorskip("torch")
    rate, capability = profile_step.torch_peak(size=64, repeats=2)
    assert 0 < rate < float("inf") and capability


def test_the_peak_line_says_when_openblas_is_held_to_an_older_cpu(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert "OPENBLAS_CORETYPE=Haswell makes OpenBLAS use Haswell's kernels" in (
        profile_step.vector_facts())
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert not any("OPENBLAS_CORETYPE" in fact for fact in profile_step.vector_facts())


def test_memory_reuse_keeps_page_faults_away(tmp_path):
    """With minissl's malloc settings a ConvNet step page-faults far less than without. On one
    thread: with chunk workers, which thread's heap serves a chunk depends on the load."""
    path = tmp_path / "memory.json"
    memory_reuse.main(["--models", "convnet", "--steps", "2", "--one-thread", "--json", str(path)])
    rows = {row["setting"]: row for row in json.loads(path.read_text())["rows"]}
    assert rows["minissl default"]["faults_per_step"] < rows["glibc default"]["faults_per_step"] / 4


def test_gpu_epoch_times_one_whole_epoch_after_the_warm_up():
    """The clock logic of benchmarks.gpu_epoch, without a GPU: every batch of the epoch is
    stepped once after the warm-up, and the GPU is waited for before each clock reading."""
    from benchmarks import gpu_epoch

    calls, syncs, cleared = [], [], []
    seconds, last = gpu_epoch.time_epoch(lambda start, stop: calls.append((start, stop)) or stop,
                                         1000, lambda: syncs.append(1), lambda: cleared.append(1))
    batch, warm = gpu_epoch.BATCH, gpu_epoch.WARMUP_STEPS
    epoch = calls[warm:]
    assert epoch[0] == (0, batch) and epoch[-1] == (1000 - 1000 % batch, 1000)
    assert len(epoch) == -(-1000 // batch) and last == 1000 and seconds >= 0
    assert len(syncs) == 2 and cleared == [1]


def test_filter_counts_sweeps_the_gemm_and_restores_the_padding(tmp_path, capsys):
    from minissl.ops import conv as conv_module

    out = tmp_path / "counts.json"
    filter_counts.main(["--counts", "3", "5", "--depth", "8", "--width", "16", "--repeats", "2",
                        "--batch", "2", "--rounds", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "M =   3" in printed and "M =   5" in printed and "LeNet conv2" in printed
    results = json.loads(out.read_text())
    assert sorted(results["gemm_ms"]) == ["3", "4", "5"]
    assert len(results["convolutions"]) == sum(len(case[4]) for case in filter_counts.CONV_CASES)
    assert all(row["unpadded_over_padded"] > 0 for row in results["convolutions"])
    assert conv_module.GEMM_FILTER_MULTIPLE == 4  # the benchmark leaves the default behind


def test_onnx_speedup_times_every_paper_row_in_onnxruntime(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[onnx]')")
    from benchmarks import onnx_speedup

    path = tmp_path / "ort.json"
    onnx_speedup.main(["--rounds", "2", "--batch", "2", "--threads", "1", "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert [row["row"] for row in rows] == ["lenet #2", "lenet #3", "lenet #4", "lenet #5",
                                            "mlp #2", "mlp #3", "convnet #2", "convnet #3",
                                            "resnet 20->14"]
    assert all(row["same_predictions"][0] == row["same_predictions"][1] for row in rows)
    assert all(row["ort_speedup"] > 0 and row["flop_ideal"] > 1 for row in rows)
    printed = capsys.readouterr().out
    assert "sequential execution, all graph optimizations" in printed and "minissl / ort" in printed
    assert all(row["minissl_over_ort"] > 0 for row in rows)
