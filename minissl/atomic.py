"""Atomic file writes: a file is either written whole or not at all.

Every file minissl writes (models, checkpoints, results.json, reports, plans, figures) goes
through `atomic_file`: the bytes go into a temporary file with a unique name beside the
target, which is renamed over the target only once the writing finished. A write that fails
(a full disk, Ctrl-C, an exception while serializing) removes the temporary file and leaves
the target as it was, so a reader never sees half a file.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

_umask = None


def file_mode():
    """The permission bits open() gives a new file in this process (0o666 less the umask).
    The umask is read once, on the first write, not when minissl is imported."""
    global _umask
    if _umask is None:
        _umask = os.umask(0o022)  # the only way to read it portably is to set it ...
        os.umask(_umask)          # ... and put it back at once
    return 0o666 & ~_umask


@contextmanager
def atomic_file(path, mode="w"):
    """Open a file that becomes `path` when the with-block ends without an exception.

    mode: "w" (text) or "wb" (bytes). The folder of `path` is created if missing. The file
    gets the permissions open() would give it, not mkstemp's owner-only 0o600. On any
    exception (KeyboardInterrupt included) the temporary file is removed and `path` is left
    untouched. Yields the open file object.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, mode) as file:
            yield file
        os.chmod(partial, file_mode())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
