"""Matplotlib figures for the demos. Uses the Agg backend: files only, never a window.

Each function takes plain data (arrays, lists, dicts) and a path, and writes one PNG
atomically (a temporary file, then a rename).
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(figure, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part.png")
    figure.savefig(partial, dpi=110, bbox_inches="tight")
    plt.close(figure)
    os.replace(partial, path)
    return path


def mlp_sparsity_figure(rows, path):
    """Surviving input pixels (28x28 masks) and neurons per layer for each row.

    rows: list of dicts with "name", "neurons" (list of ints) and optionally
    "input_mask" (bool array of 784 or (28, 28)); rows without a mask (the baseline)
    appear only in the bar chart. Returns the path written.
    """
    masked = [row for row in rows if row.get("input_mask") is not None]
    figure, axes = plt.subplots(1, len(masked) + 1, figsize=(3.2 * len(masked) + 5.5, 3.4),
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
