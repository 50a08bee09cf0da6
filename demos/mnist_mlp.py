"""python -m demos.mnist_mlp: runs minissl.experiments.mnist_mlp (its --help says what it does and
how long it takes)."""

from minissl.experiments.cli import run
from minissl.experiments.mnist_mlp import main

if __name__ == "__main__":
    run(main)
