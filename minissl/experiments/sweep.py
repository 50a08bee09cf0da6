"""The error-vs-FLOPs trade-off: a lambda sweep of one demo, one training run per setting,
on this machine or on many through Dask.

    python -m minissl.experiments sweep mnist_mlp                              # lambdas x 0.25 0.5 1 2 4
    python -m minissl.experiments sweep mnist_mlp --lambda-scale 0.5 1 2 -- --quick
    python -m minissl.experiments sweep mnist_lenet --workers 2                # a local Dask cluster
    python -m minissl.experiments sweep mnist_mlp --scheduler tcp://host:8786  # an existing Dask cluster
    python -m minissl.experiments sweep mnist_mlp --resume                     # skip settings already done
    python -m minissl.experiments sweep --help

Each setting multiplies the demo's default lambdas by one --lambda-scale and is one task: the
demo's own command (anything after `--` is passed to every run) with its own seed and its own
--out, <out>/<setting>/, where it writes results.json as it always does. The first setting also
trains the dense baseline. As each task finishes, its points (test error, remaining FLOPs and
parameters of every SSL row, from its compaction) go into <out>/sweep.json, and at the end
<out>/sweep.png draws error against FLOPs and against parameters, one point per run, the
Pareto front (no other point has both fewer FLOPs and a lower error), the baseline and, for
the MLP, the paper's rows; <out>/index.html shows that figure and every point, and links
each run's report.html.

Execution: with Dask installed (`pip install -e ".[sweep]"`) the tasks run on a local cluster
of --workers processes (default: one per two cores, at least one), or on the cluster at
--scheduler; without Dask they run one by one in this process, and the sweep says so. A task
that fails is reported with its error and the sweep goes on; Ctrl-C leaves every finished
result in place, and --resume skips the settings whose results.json is complete.
"""

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from minissl.train import html_report, records


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep runs: `demo` with `demo_args`, once per factor of `lambda_scale` (seeds
    seed, seed + 1, ...), into `out`; where (`workers` local Dask processes, the Dask
    `scheduler` at that address, or `in_process`); `resume` skips finished settings."""
    demo: str
    demo_args: tuple = ()
    lambda_scale: tuple = (0.25, 0.5, 1, 2, 4)
    seed: int = 0
    out: Path = Path("runs/sweep")
    workers: Optional[int] = None
    scheduler: Optional[str] = None
    in_process: bool = False
    resume: bool = False

def mlp_paper_points():
    """[(name, error in %, remaining FLOPs of the whole MLP in %)] of the paper's SSL rows:
    their per-layer FLOP % weighted by the dense layers' FLOPs (experiments.mnist_mlp)."""
    from minissl.experiments import mnist_mlp
    return [(row["name"].replace("paper SSL ", "paper "), 100 * row["error"],
             mnist_mlp.total_flop_pct(row["flops_pct"]))
            for row in mnist_mlp.PAPER_ROWS if "SSL" in row["name"]]


def lambda_arguments(demo, scale):
    """The demo's flags that set its SSL row(s) to `scale` times its default lambdas."""
    def scaled(values):
        return [f"{scale * value:g}" for value in values]

    if demo == "mnist_mlp":
        from minissl.experiments import mnist_mlp
        return ["--lambda", *scaled(mnist_mlp.DEFAULT_LAMBDAS[0])]
    if demo == "mnist_lenet":
        from minissl.experiments import mnist_lenet
        # from scratch: only the sweep's first run trains a baseline the rows could start from
        return ["--rows", "filters", "shapes", "--ssl-from-scratch",
                "--filter-lambda", *scaled(mnist_lenet.ROWS["filters"][2]),
                "--shape-lambda", *scaled(mnist_lenet.ROWS["shapes"][2])]
    if demo == "cifar_convnet":
        return ["--ssl-scales", f"{scale:g}"]
    if demo == "cifar_resnet":
        from minissl.experiments import cifar_resnet
        return ["--depth-lambda", f"{scale * cifar_resnet.DEFAULT_DEPTH_LAMBDA:g}"]
    raise ValueError(f"no sweep for demo {demo!r}")


DEMOS = ("mnist_mlp", "mnist_lenet", "cifar_convnet", "cifar_resnet")


def tasks(plan):
    """[(name, scale, seed, argv)] of the sweep, in order; the first also trains the baseline."""
    planned = []
    for index, scale in enumerate(plan.lambda_scale):
        name = f"scale_{scale:g}"
        argv = [*plan.demo_args, *lambda_arguments(plan.demo, scale),
                "--seed", str(plan.seed + index), "--out", str(plan.out / name)]
        if index > 0:
            argv.append("--no-baseline")
        planned.append((name, scale, plan.seed + index, argv))
    return planned


def run_task(demo, argv, threads=None):
    """Run one demo to the end in this process (a Dask worker, or the sweep itself) and
    return its results.json as a dict. `threads` caps Numba's threads (workers share cores)."""
    if threads:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    module = importlib.import_module(f"minissl.experiments.{demo}")
    try:
        module.main(list(argv))
    except SystemExit as stop:  # argparse errors, a run where every row diverged, ...
        if stop.code not in (None, 0):
            raise RuntimeError(f"{demo} exited: {stop.code}") from None
    finally:  # however the run ended, its output folder is free again
        record = records.current_record()
        if record is not None:
            record.close()
    out = Path(argv[argv.index("--out") + 1])
    return json.loads((out / "results.json").read_text())


def points_of(name, scale, results):
    """The sweep's points of one run: every trained row with its error and remaining FLOPs
    and parameters (the baseline at 100%)."""
    points = []
    for row in results.get("rows", []):
        if "diverged" in row or row.get("error") is None:
            continue
        compacted = row.get("compacted")
        if compacted:
            flops, params = compacted["flops"], compacted["params"]
            flop_pct, param_pct = 100.0 * flops[1] / flops[0], 100.0 * params[1] / params[0]
        elif "ssl" not in row["name"].lower():  # the dense baseline
            flop_pct = param_pct = 100.0
        else:
            continue  # an SSL row that could not be compacted has no FLOP figure
        points.append({"run": name, "scale": scale, "row": row["name"],
                       "error": row["error"], "flop_pct": flop_pct, "param_pct": param_pct,
                       "baseline": flop_pct == 100.0 and "ssl" not in row["name"].lower()})
    return points


def pareto_front(points):
    """The points no other point beats on both remaining FLOPs and error, by FLOPs."""
    front, best = [], float("inf")
    for point in sorted(points, key=lambda p: (p["flop_pct"], p["error"])):
        if point["error"] < best:
            front.append(point)
            best = point["error"]
    return front


class Sweep:
    """<out>/sweep.json, rewritten (atomically) each time a task ends."""

    def __init__(self, plan, planned):
        self.path = plan.out / "sweep.json"
        self.state = {"demo": plan.demo, "demo_args": list(plan.demo_args), "complete": False,
                      "tasks": {name: {"scale": scale, "seed": seed, "argv": argv,
                                       "status": "pending"}
                                for name, scale, seed, argv in planned},
                      "points": [], "front": []}

    def finished(self, name, results):
        task = self.state["tasks"][name]
        task["status"] = "done"
        self.state["points"] = [p for p in self.state["points"] if p["run"] != name]
        self.state["points"] += points_of(name, task["scale"], results)
        self.state["front"] = pareto_front(self.state["points"])
        self.save()

    def failed(self, name, error):
        self.state["tasks"][name].update(status="failed", error=error)
        self.save()

    def save(self, complete=False):
        self.state["complete"] = complete
        records.write_json(self.path, self.state)


def completed_results(out, name):
    """The results.json of a setting that finished in an earlier sweep, else None."""
    path = out / name / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return results if results.get("complete") else None


def best_text(sweep):
    front = [p for p in sweep.state["front"] if not p["baseline"]]
    if not front:
        return "no SSL point yet"
    best = min(front, key=lambda p: p["error"])
    return f"best {best['error']:.2%} at {best['flop_pct']:.1f}% FLOPs ({best['run']})"


def run_in_process(plan, pending, sweep, bar):
    for name, _, _, argv in pending:
        try:
            sweep.finished(name, run_task(plan.demo, argv))
        except Exception as error:  # noqa: BLE001 - a failed task is reported, the sweep goes on
            report_failure(sweep, name, error)
        bar.update(1)
        bar.set_postfix_str(best_text(sweep))


def run_on_dask(plan, pending, sweep, bar):
    from dask.distributed import Client, LocalCluster, as_completed

    cores = os.cpu_count() or 1
    if plan.scheduler:
        client, threads = Client(plan.scheduler), None
        where = f"the Dask cluster at {plan.scheduler}"
    else:
        workers = plan.workers or max(1, cores // 2)
        threads = max(1, cores // workers)
        # each worker's BLAS gets its share of the cores (read when a worker starts)
        os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        where = (f"a local Dask cluster of {workers} worker{'s' * (workers > 1)} ({threads} "
                 f"thread{'s' * (threads > 1)} each, {cores} cores)")
    print(f"sweep: {len(pending)} tasks on {where}")
    futures = {client.submit(run_task, plan.demo, argv, threads, key=f"{plan.demo}-{name}",
                             pure=False): name for name, _, _, argv in pending}
    try:
        for future in as_completed(futures):
            name = futures[future]
            try:
                sweep.finished(name, future.result())
                sweep.state["tasks"][name]["worker"] = _worker_of(client, future)
            except Exception as error:  # noqa: BLE001 - reported, the sweep goes on
                report_failure(sweep, name, error)
            bar.update(1)
            bar.set_postfix_str(best_text(sweep))
    finally:
        client.close()
        if not plan.scheduler:
            cluster.close()


def _worker_of(client, future):
    """The address of the worker that ran `future` (for the record), or None."""
    try:
        return client.who_has([future]).get(future.key, [None])[0]
    except Exception:  # noqa: BLE001 - only a record
        return None


def report_failure(sweep, name, error):
    text = f"{type(error).__name__}: {error}"
    print(f"sweep: task {name} failed ({text}); the sweep goes on")
    sweep.failed(name, text + "\n" + "".join(traceback.format_exception(error))[-2000:])


def dask_available():
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def figure(sweep, path, demo):
    """Error against remaining FLOPs and parameters: every point, the front, the baseline,
    and for the MLP the paper's rows."""
    from matplotlib.figure import Figure

    points = sweep.state["points"]
    fig = Figure(figsize=(10, 4.2))
    for index, (key, label) in enumerate((("flop_pct", "remaining FLOPs (%)"),
                                          ("param_pct", "remaining parameters (%)"))):
        axes = fig.add_subplot(1, 2, index + 1)
        ssl_points = [p for p in points if not p["baseline"]]
        axes.scatter([p[key] for p in ssl_points], [100 * p["error"] for p in ssl_points],
                     label="SSL runs", zorder=3)
        front = pareto_front(points) if key == "flop_pct" else sorted(
            pareto_front([{**p, "flop_pct": p["param_pct"]} for p in points]),
            key=lambda p: p["param_pct"])
        axes.plot([p[key] for p in front], [100 * p["error"] for p in front], "k-", lw=1,
                  label="Pareto front")
        for p in points:
            if p["baseline"]:
                axes.scatter([p[key]], [100 * p["error"]], marker="*", s=150, color="C3",
                             label="dense baseline", zorder=4)
        if demo == "mnist_mlp" and key == "flop_pct":
            for name, error, flop_pct in mlp_paper_points():
                axes.scatter([flop_pct], [error], marker="x", s=80, color="C2", zorder=4)
                axes.annotate(name, (flop_pct, error), fontsize=8,
                              xytext=(4, 4), textcoords="offset points")
        axes.set_xscale("log")
        axes.set_xlabel(label)
        axes.set_ylabel("test error (%)")
        axes.set_title(f"{demo}: error against {label.split(' (')[0]}")
        handles, labels = axes.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        axes.legend(unique.values(), unique.keys(), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def parse_args(argv):
    """The SweepPlan of a command line (exits through argparse when it is not valid)."""
    if "--" in argv:
        split = argv.index("--")
        argv, demo_args = argv[:split], argv[split + 1:]
    else:
        demo_args = []
    parser = argparse.ArgumentParser(prog="python -m minissl.experiments sweep",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", choices=DEMOS, help="the demo to sweep")
    parser.add_argument("--lambda-scale", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 4],
                        help="one run per factor times the demo's default lambdas "
                             "(default 0.25 0.5 1 2 4)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the first run; run i uses seed + i (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default runs/sweep_<demo>)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local Dask workers (default: one per two cores, at least one)")
    parser.add_argument("--scheduler", type=str, default=None, metavar="ADDRESS",
                        help="send the tasks to this Dask scheduler (e.g. tcp://host:8786)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the tasks one by one in this process, even with Dask")
    parser.add_argument("--resume", action="store_true",
                        help="skip the settings whose results.json is complete")
    args = parser.parse_args(argv)
    if any(scale < 0 for scale in args.lambda_scale):
        parser.error("--lambda-scale factors must be >= 0")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")
    for flag in ("--out", "--seed", "--resume", "--no-baseline"):
        if flag in demo_args:
            parser.error(f"{flag} after -- is set by the sweep for each run")
    return SweepPlan(args.demo, tuple(demo_args), tuple(args.lambda_scale), args.seed,
                     args.out or Path("runs") / f"sweep_{args.demo}", args.workers,
                     args.scheduler, args.in_process, args.resume)


def main(argv=None):
    plan = parse_args(sys.argv[1:] if argv is None else list(argv))
    plan.out.mkdir(parents=True, exist_ok=True)
    planned = tasks(plan)
    sweep = Sweep(plan, planned)
    pending = []
    for name, scale, seed, argv in planned:
        earlier = completed_results(plan.out, name) if plan.resume else None
        if earlier is not None:
            sweep.finished(name, earlier)
            print(f"sweep: {name} already has a complete result; skipped (--resume)")
        else:
            pending.append((name, scale, seed, argv))
    use_dask = not plan.in_process and pending and (dask_available() or plan.scheduler)
    if not plan.in_process and not dask_available():
        print("sweep: Dask is not installed (pip install -e '.[sweep]'); running the tasks "
              "one by one in this process")
    started = time.perf_counter()
    with tqdm(total=len(planned), initial=len(planned) - len(pending), desc="sweep",
              unit="run", file=sys.stderr, disable=None) as bar:
        try:
            (run_on_dask if use_dask else run_in_process)(plan, pending, sweep, bar)
        except KeyboardInterrupt:
            sweep.save()
            html_report.write_sweep_index(plan.out, sweep.state)
            sys.exit(f"\ninterrupted (Ctrl-C): the finished runs are in {plan.out}; "
                     f"continue with --resume")
    sweep.state["wall_time_s"] = time.perf_counter() - started
    done = [n for n, task in sweep.state["tasks"].items() if task["status"] == "done"]
    sweep.save(complete=len(done) == len(planned))
    print_summary(sweep)
    drawn = figure(sweep, plan.out / "sweep.png", plan.demo) if sweep.state["points"] else None
    index = html_report.write_sweep_index(plan.out, sweep.state)
    print(f"wrote {sweep.path}{f', {drawn}' if drawn else ''} and {index} (each run's "
          f"report.html linked) ({sweep.state['wall_time_s']:.0f} s)")


def print_summary(sweep):
    print(f"\n{'run':<14}{'row':<26}{'error':>8}{'FLOP %':>9}{'params %':>10}  front")
    front = {(p["run"], p["row"]) for p in sweep.state["front"]}
    for p in sorted(sweep.state["points"], key=lambda p: p["flop_pct"]):
        mark = "*" if (p["run"], p["row"]) in front else ""
        print(f"{p['run']:<14}{p['row']:<26}{p['error']:>8.2%}{p['flop_pct']:>9.1f}"
              f"{p['param_pct']:>10.1f}  {mark}")
    for name, task in sweep.state["tasks"].items():
        if task["status"] != "done":
            print(f"{name}: {task['status']}" + (f" ({task['error'].splitlines()[0]})"
                                                 if task.get("error") else ""))


if __name__ == "__main__":
    main()
