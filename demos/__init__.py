"""The paper's experiments from the checkout: python -m demos.<name> --help. Each file here
runs the recipe of the same name in minissl.experiments (where it is written, so that an
installed minissl runs it too: python -m minissl.experiments <name>).

The process settings for long runs (minissl.process) are applied here, before any recipe
imports NumPy.
"""

from minissl import process

process.tune_for_training()
