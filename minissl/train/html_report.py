"""The run report: one self-contained HTML page (report.html beside results.json) that shows
what a run did, built from its results.json alone (plus the PNG figures the run wrote beside
it, inlined).

    python -m minissl.train.html_report runs/mnist_mlp     # (re)build runs/mnist_mlp/report.html

It holds the run's table beside the paper's, loss and errors per epoch for every phase, how
the group norms of every layer with groups moved epoch by epoch under the proximal step
(a histogram of log10 norms per epoch, the count of groups exactly zero, the cut), what
compaction kept of each layer with the measured speedups against their FLOP-ideal, and the
command, commit, machine and wall time. An interrupted run or a diverged row says so.
Images are inline PNGs and styles inline CSS: the page opens from disk, with no network.
RunRecord rewrites it as the run goes (write_report), atomically, like results.json.
"""

import argparse
import base64
import html
import io
import json
import sys
from pathlib import Path

import numpy as np

from minissl.ssl.regularizer import NORM_BINS

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.55rem; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
tr.paper td { color: #666; background: #fafafa; }
.status { padding: 0.5rem 0.8rem; border-radius: 0.3rem; display: inline-block; }
.complete { background: #e3f4e3; } .incomplete { background: #fff2cc; } .bad { background: #fde2e2; }
img { max-width: 100%; } code { background: #f3f3f3; padding: 0 0.2rem; }
.note { color: #555; font-size: 0.9rem; }
"""

# Table columns a row may have: (key, header, how a value is written)
COLUMNS = [
    ("error", "error", lambda value: f"{value:.2%}"),
    ("neurons", "neurons", None), ("filters", "filters", None), ("channels", "channels", None),
    ("columns", "columns", None), ("layers", "layers", None),
    ("layers_per_stage", "layers per stage", None),
    ("row_sparsity", "row sparsity %", "{:.1f}"), ("column_sparsity", "column sparsity %", "{:.1f}"),
    ("flops_pct", "FLOP %", "{:.1f}"), ("speedup", "speedup", "{:.2f}"),
    ("whole_speedup", "whole network", "{:.2f}"),
]


def _text(value, form=None):
    """A table cell: lists joined by " / ", floats by `form` (a format string or function)."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return " / ".join(_text(item, form) for item in value)
    if callable(form):
        return form(value)
    if isinstance(value, float):
        return (form or "{:.4g}").format(value)
    return str(value)


def _png(figure):
    """A matplotlib figure as an inline <img> (base64 PNG); the figure is closed."""
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return (f'<img alt="figure" src="data:image/png;base64,'
            f'{base64.b64encode(buffer.getvalue()).decode("ascii")}">')


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def status_html(results):
    """The run's state in one line: complete, interrupted (and how to resume), or running."""
    history, rows = results.get("history", []), results.get("rows", [])
    diverged = [row["name"] for row in rows if "diverged" in row]
    parts = []
    if results.get("complete"):
        parts.append('<span class="status complete">complete</span>')
    elif results.get("interrupted"):
        signal = html.escape(str(results.get("stopped_by", "")))
        parts.append(f'<span class="status bad">interrupted ({signal}); what finished is below; '
                     f'continue it with <code>--resume</code> on this folder</span>')
    else:
        last = history[-1] if history else None
        where = (f"after epoch {last['epoch']} of phase {html.escape(str(last['phase']))}"
                 if last else "before its first epoch")
        parts.append(f'<span class="status incomplete">not finished: written {where}</span>')
    if diverged:
        parts.append(f'<span class="status bad">diverged: {html.escape(", ".join(diverged))} '
                     f'(no compaction, no table line)</span>')
    return " ".join(parts)


def facts_html(results):
    """Command, commit, machine, dataset, schedule and wall time, as a two-column table."""
    run = results.get("run", {})
    dataset = results.get("dataset", {})
    command = run.get("command") or " ".join(["python -m demos." + str(results.get("experiment"))]
                                             + [str(arg) for arg in results.get("argv", [])])
    facts = [("command", f"<code>{html.escape(command)}</code>"),
             ("commit", html.escape(str(run.get("commit") or "unknown"))),
             ("machine", html.escape(str(run.get("machine") or "unknown"))),
             ("started", html.escape(str(run.get("started") or "unknown"))),
             ("wall time", f"{results.get('wall_time_s', 0):,.0f} s"),
             ("dataset", html.escape(f"{dataset.get('name', '?')}: {dataset.get('n_train', '?'):,} "
                                     f"train / {dataset.get('n_test', '?'):,} test"
                                     if isinstance(dataset.get("n_train"), int) else
                                     str(dataset.get("name", "?"))))]
    for key in ("epochs", "ssl_epochs", "finetune_epochs", "lr", "finetune_lr", "momentum",
                "weight_decay", "batch_size", "seed"):
        if results.get(key) is not None:
            facts.append((key.replace("_", " "), html.escape(str(results[key]))))
    cells = "".join(f'<tr><th class="name">{name}</th><td class="name">{value}</td></tr>'
                    for name, value in facts)
    return f"<table>{cells}</table>"


def table_html(results):
    """Our trained rows, then the paper's (shaded), in the columns any of them has."""
    rows = [row for row in results.get("rows", []) if "diverged" not in row]
    paper = results.get("paper_rows") or results.get("paper_points") or []
    if not rows and not paper:
        return '<p class="note">No row has finished yet.</p>'
    columns = [column for column in COLUMNS if any(row.get(column[0]) is not None
                                                   for row in rows + paper)]
    head = '<th class="name">row</th>' + "".join(f"<th>{header}</th>" for _, header, _ in columns)
    body = []
    for kind, group in (("", rows), ("paper", paper)):
        for row in group:
            cells = "".join(f"<td>{html.escape(_text(row.get(key), form))}</td>"
                            for key, _, form in columns)
            body.append(f'<tr class="{kind}"><td class="name">{html.escape(str(row["name"]))}'
                        f'</td>{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def phases(history):
    """[(phase name, its epoch records)] in the order the run trained them."""
    ordered = []
    for entry in history:
        if not ordered or ordered[-1][0] != entry["phase"]:
            ordered.append((entry["phase"], []))
        ordered[-1][1].append(entry)
    return ordered


def curves_html(results):
    """Loss and train / test error per epoch, every phase one after the other."""
    history = results.get("history", [])
    if not history:
        return '<p class="note">No epoch has finished yet.</p>'
    plt = _pyplot()
    figure, (errors, losses) = plt.subplots(1, 2, figsize=(11, 3.6))
    start = 0
    for index, (phase, entries) in enumerate(phases(history)):
        x = np.arange(start + 1, start + len(entries) + 1)
        style = {"color": f"C{index % 10}", "marker": "o", "markersize": 2.5}
        errors.plot(x, [100 * e["test_error"] for e in entries], label=phase, **style)
        errors.plot(x, [100 * e["train_error"] for e in entries], ls=":", **style)
        losses.plot(x, [e["loss"] for e in entries], **style)
        if start:
            for axis in (errors, losses):
                axis.axvline(start + 0.5, color="#999", lw=0.6)
            if phase.endswith(" fine-tune"):  # the cut came before it: small groups to zero
                errors.annotate("cut", (start + 0.5, 1), xycoords=("data", "axes fraction"),
                                fontsize=7, ha="center", va="bottom", color="C3")
        start += len(entries)
    errors.set(xlabel="epoch (phases one after another)", ylabel="error % (test; train dotted)")
    losses.set(xlabel="epoch", ylabel="training loss (with the group lasso in SSL phases)")
    errors.legend(fontsize=7)
    figure.tight_layout()
    return _png(figure)


def zero_counts(entry):
    """"exactly zero after epoch N: layer L kind zero/groups, ..." of one epoch record."""
    counts = ", ".join(f"layer {s['layer']} {s['kind'].lower()} {s['zero']}/{s['groups']}"
                       for s in entry["group_norms"])
    return html.escape(f"exactly zero after epoch {entry['epoch']}: {counts}")


def group_norms_html(results):
    """Per phase with groups: per group set, a histogram of log10 group norms per epoch (a
    column per epoch, darker = more groups) with the share of groups exactly zero."""
    parts = []
    order = phases(results.get("history", []))
    cut_of = {f"{row['name']} fine-tune": row["cut"] for row in results.get("rows", [])
              if row.get("cut")}
    cuts = {phase: cut_of[after] for (phase, _), (after, _) in zip(order, order[1:])
            if after in cut_of}  # a row's cut comes between its prox phase and fine-tuning
    plt = _pyplot()
    for phase, entries in order:
        tracked = [entry for entry in entries if entry.get("group_norms")]
        if tracked and phase.endswith(" fine-tune"):  # frozen structure: the counts say it
            parts.append(f'<h3>{html.escape(phase)}</h3><p class="note">The zero groups held '
                         f"at zero while the rest trains; {zero_counts(tracked[-1])}.</p>")
            continue
        if not tracked:
            continue
        if all("norms" in summary for entry in tracked for summary in entry["group_norms"]):
            picture = few_groups_png(plt, tracked)
            note = ("One line per group (each residual branch of a ResNet is one); a group "
                    "exactly zero is drawn on the bottom edge. ")
        else:
            picture, note = histograms_png(plt, tracked), ""
        parts.append(f"<h3>{html.escape(phase)}</h3>{picture}"
                     f'<p class="note">{note}{zero_counts(tracked[-1]).capitalize()}.</p>')
        cut = cuts.get(phase)
        if cut:
            parts.append(f'<p class="note">The cut after this phase: {cut_text(cut)}.</p>')
    if not parts:
        return '<p class="note">No phase with group lasso has finished an epoch yet.</p>'
    return ("<p class=\"note\">Each column is one epoch; the grey scale counts the groups whose "
            "norm falls in each quarter decade (nonzero norms below 1e-6 in the lowest bin); "
            "the red line is the share of groups exactly zero, which only the proximal step "
            "(and the cut) makes.</p>" + "".join(parts))


def histograms_png(plt, tracked):
    """One panel per group set: a column per epoch of the log10 group-norm histogram (darker =
    more groups) and, in red, the share of its groups exactly zero."""
    low, high, _ = NORM_BINS
    sets = tracked[0]["group_norms"]
    epochs = [entry["epoch"] for entry in tracked]
    figure, axes = plt.subplots(1, len(sets), figsize=(3.4 * len(sets), 2.9), squeeze=False)
    for index, (axis, first) in enumerate(zip(axes[0], sets)):
        counts = np.array([entry["group_norms"][index]["counts"] for entry in tracked]).T
        axis.imshow(np.log1p(counts), origin="lower", aspect="auto", cmap="Greys",
                    extent=(epochs[0] - 0.5, epochs[-1] + 0.5, low, high))
        axis.set(title=f"layer {first['layer']} {first['kind'].lower()} ({first['groups']})",
                 xlabel="epoch", ylabel="log10 group norm" if index == 0 else None)
        axis.title.set_fontsize(8)
        share = axis.twinx()
        share.plot(epochs, [100 * entry["group_norms"][index]["zero"] / max(1, first["groups"])
                            for entry in tracked], color="C3")
        share.set_ylim(0, 100)
        if index == len(sets) - 1:
            share.set_ylabel("groups exactly zero %", color="C3")
    figure.subplots_adjust(wspace=0.55, bottom=0.18)
    return _png(figure)


def few_groups_png(plt, tracked):
    """One panel for group sets of a few groups each (ResNet depth groups: one per set): each
    group's norm per epoch on a log scale, exact zeros on the bottom edge."""
    low = 10.0 ** NORM_BINS[0]
    epochs = [entry["epoch"] for entry in tracked]
    figure, axis = plt.subplots(figsize=(7.5, 3.4))
    for index, first in enumerate(tracked[0]["group_norms"]):
        for group in range(len(first["norms"])):
            norms = [max(entry["group_norms"][index]["norms"][group], low) for entry in tracked]
            label = f"layer {first['layer']}" + (f" #{group}" if len(first["norms"]) > 1 else "")
            axis.plot(epochs, norms, marker=".", label=label, color=f"C{index % 10}",
                      linestyle=("-", "--", ":")[index // 10 % 3])
    axis.set(yscale="log", ylim=(low / 2, None), xlabel="epoch", ylabel="group norm")
    axis.axhline(low, color="grey", linewidth=0.6)
    axis.text(epochs[0], low * 1.6, "exactly zero (and below 1e-6)", fontsize=7, color="grey")
    axis.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def cut_text(cut):
    """The cut of a row (train.report.cut_summary) in words."""
    return html.escape(f"{cut.get('groups_zeroed', '?')} groups with 0 < norm < "
                       f"{cut.get('threshold', '?')} set to exactly zero (largest such norm "
                       f"{_text(cut.get('largest_norm_zeroed'), '{:.2e}')})")


def compaction_html(results):
    """Per row that was compacted: what each layer kept and its measured speedup against the
    FLOP-ideal one, with the quartiles of the timed rounds."""
    parts = []
    for row in results.get("rows", []):
        report = row.get("compacted")
        if not report:
            continue
        agree, images = report.get("same_predictions", [0, 0])
        lines = []
        by_layer = {entry["layer"]: entry for entry in report.get("layers", [])}
        for layer, kept in report.get("kept", {}).items():
            speed = by_layer.get(layer, {})
            iqr = speed.get("speedup_iqr") or [None, None]
            lines.append("<tr>" + "".join(f"<td>{html.escape(_text(value, form))}</td>" for value, form in (
                (layer, None), (kept.get("filters"), None), (kept.get("channels"), None),
                (kept.get("columns"), None), (speed.get("flop_pct"), "{:.1f}"),
                (speed.get("ideal_speedup"), "{:.2f}"), (speed.get("speedup"), "{:.2f}"),
                (iqr, "{:.2f}"), (speed.get("efficiency"), "{:.2f}"),
                (", ".join(speed.get("flags") or []) or None, None))) + "</tr>")
        head = "".join(f"<th>{name}</th>" for name in (
            "layer", "filters", "channels", "columns", "FLOP %", "FLOP-ideal", "measured",
            "quartiles", "efficiency", "flags"))
        whole = report.get("whole_speedup")
        parts.append(f"<h3>{html.escape(str(row['name']))}</h3><p>Same predictions as the sparse "
                     f"model on {agree:,} of {images:,} test images; whole network "
                     f"{_text(whole, '{:.2f}')}x at batch {report.get('batch', '?')} "
                     f"(quartiles {_text(report.get('whole_speedup_iqr'), '{:.2f}')}).</p>"
                     f"<table><tr>{head}</tr>{''.join(lines)}</table>")
    return "".join(parts) or '<p class="note">No row has been compacted yet.</p>'


def figures_html(out):
    """The PNG figures the run wrote beside results.json, inline."""
    parts = []
    for path in sorted(Path(out).glob("*.png")):
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h3>{html.escape(path.name)}</h3>"
                     f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">')
    return "".join(parts) or '<p class="note">The run has written no figure yet.</p>'


def render(results, out=None):
    """The report of a run (its results.json as a dict) as one HTML string; `out`, the run's
    folder, adds the PNG figures found there."""
    title = f"minissl run: {results.get('experiment', '?')}"
    sections = [("Status", status_html(results)), ("The run", facts_html(results)),
                ("Results, ours and the paper's", table_html(results)),
                ("Training, epoch by epoch", curves_html(results)),
                ("The group lasso at work: group norms per epoch", group_norms_html(results)),
                ("Compaction and measured speedups", compaction_html(results))]
    if out is not None:
        sections.append(("Figures", figures_html(out)))
    body = "".join(f"<h2>{name}</h2>{content}" for name, content in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f"{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>\n")


def render_sweep(state, out):
    """The index page of a sweep (its sweep.json as a dict): the error-vs-FLOPs figure
    (sweep.png in `out`, inline), every point with the Pareto front marked, and every run
    with its status and a link to its own report.html."""
    out = Path(out)
    figure = out / "sweep.png"
    image = (f'<img alt="error against FLOPs" src="data:image/png;base64,'
             f'{base64.b64encode(figure.read_bytes()).decode("ascii")}">' if figure.exists()
             else '<p class="note">No figure yet (no run has finished).</p>')
    front = {(point["run"], point["row"]) for point in state.get("front", [])}
    points = "".join(
        f'<tr><td class="name">{html.escape(point["run"])}</td><td class="name">'
        f'{html.escape(point["row"])}</td><td>{point["error"]:.2%}</td>'
        f'<td>{point["flop_pct"]:.1f}</td><td>{point["param_pct"]:.1f}</td>'
        f'<td>{"*" if (point["run"], point["row"]) in front else ""}</td></tr>'
        for point in sorted(state.get("points", []), key=lambda point: point["flop_pct"]))
    runs = []
    for name, task in state.get("tasks", {}).items():
        report = out / name / "report.html"
        link = (f'<a href="{html.escape(name)}/report.html">report</a>' if report.exists()
                else "-")
        error = (task.get("error") or "").splitlines()[:1]
        runs.append(f'<tr><td class="name">{html.escape(name)}</td><td>{task.get("scale")}</td>'
                    f'<td>{task.get("seed")}</td><td class="name">{html.escape(task["status"])}'
                    f'{": " + html.escape(error[0]) if error else ""}</td><td>{link}</td></tr>')
    status = ('<span class="status complete">complete</span>' if state.get("complete") else
              '<span class="status incomplete">not finished (continue it with --resume)</span>')
    title = f"minissl sweep: {state.get('demo', '?')}"
    body = (f"<h1>{html.escape(title)}</h1><p>{status}</p><h2>Error against FLOPs</h2>{image}"
            f"<h2>Points (* on the Pareto front)</h2><table><tr><th class=\"name\">run</th>"
            f"<th class=\"name\">row</th><th>error</th><th>FLOP %</th><th>params %</th>"
            f"<th>front</th></tr>{points}</table><h2>Runs</h2><table><tr><th class=\"name\">"
            f"run</th><th>lambda scale</th><th>seed</th><th class=\"name\">status</th>"
            f"<th>report</th></tr>{''.join(runs)}</table>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f"{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}</body>"
            f"</html>\n")


def write_sweep_index(out, state):
    """Write <out>/index.html of a sweep atomically (render_sweep); returns the Path."""
    from minissl.train.records import write_text
    return write_text(Path(out) / "index.html", render_sweep(state, out))


def write_report(out, results=None):
    """Write <out>/report.html atomically from `results` (default: <out>/results.json).
    Returns the Path written."""
    from minissl.train.records import write_text
    out = Path(out)
    if results is None:
        results = json.loads((out / "results.json").read_text())
    return write_text(out / "report.html", render(results, out))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minissl.train.html_report",
                                     description="Build report.html of a run from its "
                                                 "results.json (and the figures beside it).")
    parser.add_argument("run", type=Path, help="the --out folder of a run")
    args = parser.parse_args(argv)
    try:
        results = json.loads((args.run / "results.json").read_text())
    except (OSError, ValueError) as error:
        sys.exit(f"error: {args.run}/results.json cannot be read ({error})")
    print(f"wrote {write_report(args.run, results)}")


if __name__ == "__main__":
    main()
