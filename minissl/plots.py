"""Matplotlib figures for the demos: files only, never a window.

Each function takes plain data (arrays, lists, dicts) and a path, and writes one PNG
atomically (a temporary file, then a rename). Figures are built as `matplotlib.figure.Figure`
objects, which draw to a file without pyplot: importing minissl neither imports matplotlib
(it loads on the first figure) nor changes the backend a notebook or script has chosen.
"""

from pathlib import Path

import numpy as np

from minissl.atomic import atomic_file


def _figure(rows=1, columns=1, **options):
    """(Figure, axes) like pyplot.subplots, without pyplot or its global state."""
    from matplotlib.figure import Figure

    layout = options.pop("layout", None)
    figure = Figure(figsize=options.pop("figsize", None), layout=layout)
    return figure, figure.subplots(rows, columns, **options)


def _save(figure, path):
    path = Path(path)
    with atomic_file(path, "wb") as file:
        figure.savefig(file, format="png", dpi=110, bbox_inches="tight")
    return path


def mlp_sparsity_figure(rows, path):
    """Surviving input pixels (28x28 masks) and neurons per layer for each row.

    rows: list of dicts with "name", "neurons" (list of ints) and optionally
    "input_mask" (bool array of 784 or (28, 28)); rows without a mask (the baseline)
    appear only in the bar chart. Returns the path written.
    """
    masked = [row for row in rows if row.get("input_mask") is not None]
    figure, axes = _figure(1, len(masked) + 1, figsize=(3.2 * len(masked) + 5.5, 3.4),
                                gridspec_kw={"width_ratios": [1] * len(masked) + [1.8]},
                                layout="constrained")
    axes = np.atleast_1d(axes)
    for axis, row in zip(axes, masked):
        mask = np.asarray(row["input_mask"]).reshape(28, 28)
        axis.imshow(mask, cmap="gray", vmin=0, vmax=1)
        axis.set_title(f"{row['name']}\n{int(mask.sum())} of 784 pixels kept", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    bars = axes[-1]
    layers = len(rows[0]["neurons"])
    width = 0.8 / len(rows)
    for index, row in enumerate(rows):
        positions = np.arange(layers) + (index - (len(rows) - 1) / 2) * width
        drawn = bars.bar(positions, row["neurons"], width, label=row["name"])
        bars.bar_label(drawn, fontsize=6)
    bars.set_xticks(np.arange(layers))
    bars.set_xticklabels(["input"] + [f"hidden {i}" for i in range(1, layers - 1)] + ["output"])
    bars.set_ylabel("neurons")
    bars.set_title("neurons per layer", fontsize=9)
    bars.legend(fontsize=8)
    return _save(figure, path)


def conv_sparsity_figure(rows, path):
    """For each row: conv1's filters (KH x KW tiles, zero filters blank), the nonzero map of
    conv2's GEMM matrix W2 (filters x shape columns), and the measured speedup per conv
    layer beside the ideal one (1 / FLOP fraction).

    rows: list of dicts with "name", "conv1" (C_out, 1, KH, KW) array, "conv2"
    (C_out, C_in, KH, KW) array, and optionally "speedup" and "flops_pct" (two values each).
    Returns the path written.
    """
    figure, axes = _figure(len(rows), 3, figsize=(13, 3.0 * len(rows)), squeeze=False,
                                gridspec_kw={"width_ratios": [1.3, 2.2, 1]}, layout="constrained")
    for (tiles, matrix, bars), row in zip(axes, rows):
        _filter_tiles(tiles, np.asarray(row["conv1"]), f"{row['name']}: conv1 filters")
        nonzero = np.asarray(row["conv2"]).reshape(row["conv2"].shape[0], -1) != 0  # (N, C*KH*KW)
        matrix.imshow(nonzero.astype(float), cmap="Greys", vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
        matrix.set_title(f"conv2 W2 nonzeros: {int(nonzero.any(axis=1).sum())} filters x "
                         f"{int(nonzero.any(axis=0).sum())} columns", fontsize=9)
        matrix.set_xlabel("shape column (c, kh, kw)")
        matrix.set_ylabel("filter")
        if row.get("speedup"):
            ideal = [100.0 / pct for pct in row["flops_pct"]]
            positions = np.arange(2)
            bars.bar(positions - 0.2, row["speedup"], 0.4, label="measured")
            bars.bar(positions + 0.2, ideal, 0.4, label="1 / FLOP fraction", alpha=0.5)
            bars.set_xticks(positions)
            bars.set_xticklabels(["conv1", "conv2"])
            bars.set_title("forward speedup (batch 100)", fontsize=9)
            bars.legend(fontsize=7)
        else:
            bars.axis("off")
    return _save(figure, path)


def _filter_tiles(axis, weight, title):
    """Draw the filters of a one-channel conv weight (N, 1, KH, KW) side by side."""
    count, _, height, width = weight.shape
    columns = int(np.ceil(count / 2))
    canvas = np.full((2 * (height + 1), columns * (width + 1)), np.nan)
    scale = np.abs(weight).max() or 1.0
    for index in range(count):
        top, left = (index // columns) * (height + 1), (index % columns) * (width + 1)
        if np.any(weight[index]):
            canvas[top:top + height, left:left + width] = weight[index, 0] / scale
    axis.imshow(canvas, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    kept = int(np.any(weight.reshape(count, -1) != 0, axis=1).sum())
    axis.set_title(f"{title} ({kept} of {count} nonzero)", fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def cifar_filters_figure(rows, path):
    """For each row: conv1's filters as RGB tiles (zero filters left blank, as in the paper's
    Figure 5) and the nonzero map of each conv layer's GEMM matrix W2 (filters x shape
    columns), whose empty rows and columns are what compaction removes.

    rows: list of dicts with "name", "conv1" (C_out, 3, KH, KW) array and "weights2", a list
    of conv weights (C_out, C_in, KH, KW). Returns the path written.
    """
    layers = len(rows[0]["weights2"])
    figure, axes = _figure(len(rows), layers + 1, figsize=(3.2 * (layers + 1) + 2,
                                                                2.8 * len(rows)),
                                squeeze=False, layout="constrained",
                                gridspec_kw={"width_ratios": [1.6] + [1] * layers})
    for row_axes, row in zip(axes, rows):
        _rgb_tiles(row_axes[0], np.asarray(row["conv1"]), f"{row['name']}: conv1 filters")
        for index, (axis, weight) in enumerate(zip(row_axes[1:], row["weights2"]), start=1):
            weight = np.asarray(weight)
            nonzero = weight.reshape(weight.shape[0], -1) != 0  # (C_out, C_in*KH*KW)
            axis.imshow(nonzero.astype(float), cmap="Greys", vmin=0, vmax=1, aspect="auto",
                        interpolation="nearest")
            axis.set_title(f"conv{index} W2: {int(nonzero.any(axis=1).sum())} rows x "
                           f"{int(nonzero.any(axis=0).sum())} columns", fontsize=8)
            axis.set_xlabel("shape column (c, kh, kw)", fontsize=7)
            axis.set_ylabel("filter", fontsize=7)
            axis.tick_params(labelsize=6)
    return _save(figure, path)


def _rgb_tiles(axis, weight, title):
    """Draw the filters of a three-channel conv weight (N, 3, KH, KW) as colour tiles, each
    scaled to [0, 1] on its own; all-zero filters stay white."""
    count, _, height, width = weight.shape
    columns = int(np.ceil(count / 4))
    canvas = np.ones((4 * (height + 1), columns * (width + 1), 3))
    for index in range(count):
        tile = weight[index].transpose(1, 2, 0)  # (3, KH, KW) -> (KH, KW, 3)
        if not np.any(tile):
            continue
        low, high = tile.min(), tile.max()
        top, left = (index // columns) * (height + 1), (index % columns) * (width + 1)
        canvas[top:top + height, left:left + width] = (tile - low) / ((high - low) or 1.0)
    axis.imshow(canvas, interpolation="nearest")
    kept = int(np.any(weight.reshape(count, -1) != 0, axis=1).sum())
    axis.set_title(f"{title} ({kept} of {count} nonzero)", fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def depth_figure(rows, paper_points, path):
    """Test error against the number of layers: our ResNet and SSL-ResNet rows (joined by an
    arrow) and the paper's points (Figure 6), each labelled with its name.

    rows: dicts with "name", "layers", "error" (a fraction) and "layers_per_stage";
    paper_points: dicts with "name", "layers", "error". Returns the path written.
    """
    figure, axis = _figure(figsize=(6.4, 4.2), layout="constrained")
    for points, marker, label in ((rows, "o", "ours"), (paper_points, "s", "paper")):
        if not points:
            continue
        axis.scatter([p["layers"] for p in points], [100 * p["error"] for p in points],
                     marker=marker, s=48, label=label)
        for point in points:
            stages = point.get("layers_per_stage")
            text = point["name"] + (f" ({'-'.join(map(str, stages))})" if stages else "")
            axis.annotate(text, (point["layers"], 100 * point["error"]), fontsize=7,
                          xytext=(4, 4), textcoords="offset points")
    if len(rows) == 2:
        (first, second) = rows
        axis.annotate("", (second["layers"], 100 * second["error"]),
                      (first["layers"], 100 * first["error"]),
                      arrowprops={"arrowstyle": "->", "alpha": 0.5})
    axis.set_xlabel("layers (convolutions on the main path + first conv + fc)")
    axis.set_ylabel("test error (%)")
    axis.set_title("ResNet depth on CIFAR-10: ours (layers per stage) and the paper's",
                   fontsize=9)
    axis.legend(fontsize=8)
    return _save(figure, path)
