"""`python -m minissl.experiments NAME [flags]` and the `minissl-experiment` console script:
run one experiment by name (`--help` after the name lists its flags)."""

import importlib
import sys

from minissl import process
from minissl.experiments import EXPERIMENTS


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in EXPERIMENTS:
        lines = [f"  {name:<15}{about}" for name, about in EXPERIMENTS.items()]
        usage = ("usage: python -m minissl.experiments NAME [flags]   (NAME --help for its "
                 "flags)\n\nexperiments:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            sys.exit(f"{usage}\n\nerror: no experiment named {argv[0]!r}")
        print(usage)
        return
    process.tune_for_training()  # before the experiment loads NumPy
    module = importlib.import_module(f"minissl.experiments.{argv[0]}")
    if argv[0] == "sweep":
        module.main(argv[1:])
    else:
        from minissl.experiments import cli

        cli.run(lambda: module.main(argv[1:]))


if __name__ == "__main__":
    main()
