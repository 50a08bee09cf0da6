"""python -m demos.cifar_convnet: runs minissl.experiments.cifar_convnet (its --help says what it does and
how long it takes)."""

from minissl.experiments.cli import run
from minissl.experiments.cifar_convnet import main

if __name__ == "__main__":
    run(main)
