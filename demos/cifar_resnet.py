"""python -m demos.cifar_resnet: runs minissl.experiments.cifar_resnet (its --help says what it does and
how long it takes)."""

from minissl.experiments.cli import run
from minissl.experiments.cifar_resnet import main

if __name__ == "__main__":
    run(main)
