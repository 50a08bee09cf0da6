"""python -m demos.mnist_lenet: runs minissl.experiments.mnist_lenet (its --help says what it does and
how long it takes)."""

from minissl.experiments.cli import run
from minissl.experiments.mnist_lenet import main

if __name__ == "__main__":
    run(main)
