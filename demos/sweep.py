"""python -m demos.sweep: runs minissl.experiments.sweep (its --help says what it does)."""

from minissl.experiments.sweep import main

if __name__ == "__main__":
    main()
