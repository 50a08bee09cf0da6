"""The compaction report: compact a sparse model, prove on real images that the compacted
model predicts what the sparse one does, and time both, layer by layer and whole; plus the
text helpers the experiments' tables share.
"""

import numpy as np

from minissl import compact, timing
from minissl.tensor import Tensor
from minissl.train.config import TimingConfig
from minissl.train.loop import on_backend, predict


def compaction_report(model, inputs, labels, input_shape=None, timing_config=TimingConfig(),
                      warn=print):
    """Compact a sparse model, check it predicts the same classes, time the speedup.

    Shapes: inputs (N, ...) real test images, labels (N,). The compacted model must predict
    exactly the sparse model's classes on all of them (else RuntimeError: a bug, never a
    result); the count that agreed is reported as "same_predictions" [agreed, images].
    Returns (None, None), after saying why through `warn`, when SSL left a layer with
    nothing (every unit zero). Otherwise returns (small model, dict) with the test error, the
    plan's FLOPs and parameters, what each Linear/Conv2d keeps ("kept": filters, channels
    read and columns of its GEMM matrix), the forward speedup of each Linear/Conv2d layer
    (timing.layer_speeds) and of the whole network, on a batch of timing_config.batch.
    Timings the FLOPs cannot explain are flagged and named through `warn`.
    """
    try:
        small, plan = compact.compact(model, input_shape)
    except compact.CompactionError as error:
        warn(f"note: nothing to compact ({error}); lower the lambdas")
        return None, None
    sparse_predictions, small_predictions = predict(model, inputs), predict(small, inputs)
    agree = int((sparse_predictions == small_predictions).sum())
    if agree != len(inputs):
        raise RuntimeError(f"the compacted model disagrees with the sparse one on "
                           f"{len(inputs) - agree} of {len(inputs)} images")
    batch = timing_config.batch
    x = Tensor(on_backend(inputs[:batch]))
    repeats, seconds = timing_config.repeat_count, timing_config.min_seconds
    layers = [speed.summary() for speed in
              timing.layer_speeds(model, plan, x, repeats=repeats, min_seconds=seconds)]
    whole = timing.network_speed(model, small, x, repeats=repeats, min_seconds=seconds)
    whole_flags = timing.speedup_flags(whole.median, (whole.q1, whole.q3),
                                       100.0 * plan.flops_after / plan.flops_before)
    for name, flags in [(f"layer {entry['layer']}", entry["flags"]) for entry in layers] + [
            ("whole network", whole_flags)]:
        if flags:
            warn(f"warning: {name}: {'; '.join(flags)}: machine noise, not a result (marked "
                 f"'?' in the table; rerun on a quiet machine)")
    return small, {"error": float((small_predictions != labels).mean()),
                   "same_predictions": [agree, len(inputs)], "kept": kept_per_layer(plan),
                   "params": [plan.params_before, plan.params_after],
                   "flops": [plan.flops_before, plan.flops_after], "layers": layers,
                   "whole_speedup": whole.median, "whole_speedup_iqr": [whole.q1, whole.q3],
                   "whole_flags": whole_flags, "batch": batch}


def kept_per_layer(plan):
    """{layer name: {"filters", "channels", "columns"}} kept by each Linear/Conv2d of a
    CompactionPlan (columns: of its GEMM matrix, C_in*KH*KW kept for a convolution)."""
    return {layer.name: {"filters": len(layer.kept_out), "channels": len(layer.kept_in),
                         "columns": (layer.shape_after[1] if len(layer.shape_after) == 2 else
                                     int(np.prod(layer.shape_after[1:])))}
            for layer in plan.layers if layer.kind in ("conv", "linear") and layer.shape_after}


def speed_text(value, flags=()):
    """A speedup for a table: "2.31", "2.31?" when timing flagged it (not a result, see
    minissl.timing.speedup_flags), "-" when there is none."""
    if value is None:
        return "-"
    return f"{value:.2f}" + ("?" if flags else "")


def row_speeds(row, separator):
    """A table row's per-layer speedups joined by `separator` ("1.83 / 5.20?"), "-" when the
    row has none; a flagged timing gets its "?" (speed_text)."""
    if not row.get("speedup"):
        return "-"
    flags = row.get("speedup_flags") or [[]] * len(row["speedup"])
    return separator.join(map(speed_text, row["speedup"], flags))


def flagged_note(rows):
    """The table's footnote when some speedup in `rows` is marked '?' (else "")."""
    if any(row.get("compacted") and (row["compacted"].get("whole_flags") or any(
            entry["flags"] for entry in row["compacted"]["layers"])) for row in rows):
        return ("? = a timing the FLOPs cannot explain (machine noise): not a result; "
                "results.json keeps it with its flags and quartiles")
    return ""


def cut_summary(cut):
    """A cut's report (minissl.ssl CutReport) as the plain dict a results row keeps."""
    return {"threshold": cut.threshold, "groups_zeroed": cut.groups_zeroed,
            "largest_norm_zeroed": cut.largest_norm_zeroed}


def rules_summary(rules):
    """GroupRules as plain dicts for a results row."""
    return [{"layer": rule.layer, "kind": rule.kind.value, "lambda": rule.strength}
            for rule in rules]


def layer_speed_fields(compacted, layers):
    """The per-layer fields of a results row from a compaction report: "flops_pct",
    "speedup" and "speedup_flags" of the named `layers`, in order, and "whole_speedup" and
    "whole_flags"; all None (flags empty) when there is no report."""
    if compacted is None:
        return {"flops_pct": None, "speedup": None, "speedup_flags": None,
                "whole_speedup": None, "whole_flags": []}
    by_layer = {entry["layer"]: entry for entry in compacted["layers"]}
    return {"flops_pct": [by_layer[layer]["flop_pct"] for layer in layers],
            "speedup": [by_layer[layer]["speedup"] for layer in layers],
            "speedup_flags": [by_layer[layer]["flags"] for layer in layers],
            "whole_speedup": compacted["whole_speedup"], "whole_flags": compacted["whole_flags"]}
