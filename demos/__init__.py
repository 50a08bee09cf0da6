"""Runnable experiments of the paper, one file each: python -m demos.<name> --help."""
