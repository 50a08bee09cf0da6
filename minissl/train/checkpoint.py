"""Checkpoints: a long run survives interruption and resumes to the same weights.

After every epoch, each training phase ("baseline", "SSL x1", "SSL x1 fine-tune", ...)
writes <out>/checkpoints/<phase>.npz: the model's parameters and buffers, the optimizer's
momentum buffers and learning rate, the schedule's step, the state of the random generator
that shuffles and augments, and the phase's epoch records. `--resume DIR` runs the demo
again with the arguments it was started with; each phase then starts from its checkpoint:
a finished phase is skipped, an unfinished one continues after its last finished epoch.
Everything a step depends on is restored, so the resumed run ends with the same weights,
bit for bit, as a run that was never interrupted (tests/test_train_checkpoint.py).

Files are .npz read with allow_pickle=False (the metadata is a JSON string), written
atomically (a temporary file, then a rename).
"""

import json
import re
import zipfile
from pathlib import Path

import numpy as np

from minissl import to_numpy
from minissl.atomic import atomic_file
from minissl.backend import xp_of

FOLDER = "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint does not fit the run that tries to resume from it."""


def _file_name(phase):
    return re.sub(r"[^A-Za-z0-9.]+", "_", phase).strip("_") + ".npz"


class PhaseCheckpoints:
    """The checkpoints of one run, in <out>/checkpoints/. With `resume`, `load` returns
    what a phase saved earlier; without it, a run starts every phase afresh."""

    def __init__(self, out, resume=False):
        self.folder = Path(out) / FOLDER
        self.resume = resume

    def path(self, phase):
        return self.folder / _file_name(phase)

    def save(self, phase, epoch, epochs, model, optimizer, schedule, rng, history):
        """Write the state after `epoch` of `epochs` of `phase` (history: its epoch records)."""
        arrays = {f"model/{key}": value for key, value in model.state_dict().items()}
        for index, velocity in enumerate(optimizer.velocity):
            if velocity is not None:
                arrays[f"velocity/{index}"] = to_numpy(velocity)
        meta = {"phase": phase, "epoch": epoch, "epochs": epochs, "lr": optimizer.lr,
                "schedule_t": schedule.t, "velocities": len(optimizer.velocity),
                "rng": rng.bit_generator.state, "history": history}
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_file(self.path(phase), "wb") as file:
            np.savez(file, **arrays)

    def load(self, phase, epochs):
        """The saved state of `phase` as (meta dict, arrays dict), or None when there is
        none (or this run does not resume). CheckpointError when it was made for another
        number of epochs or cannot be read."""
        path = self.path(phase)
        if not self.resume or not path.exists():
            return None
        meta, arrays = _read(path, "; delete it to retrain that phase")
        if meta["phase"] != phase or meta["epochs"] != epochs:
            raise CheckpointError(f"{path}: made for {meta['epochs']} epochs of "
                                  f"{meta['phase']!r}, this run has {epochs} of {phase!r}")
        return meta, arrays


def _read(path, advice=""):
    """(meta dict, arrays dict) of a checkpoint file; CheckpointError when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        return json.loads(str(arrays.pop("meta"))), arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: cannot be read ({error}){advice}") from error


def restore(meta, arrays, model, optimizer, schedule, rng):
    """Put a saved state back into the live objects (the model stays on its backend)."""
    model.load_state_dict({key[len("model/"):]: value for key, value in arrays.items()
                           if key.startswith("model/")})
    if meta["velocities"] != len(optimizer.velocity):
        raise CheckpointError(f"the checkpoint holds {meta['velocities']} parameters' "
                              f"momentum, the optimizer has {len(optimizer.velocity)}")
    for index, param in enumerate(optimizer.params):
        saved = arrays.get(f"velocity/{index}")
        optimizer.velocity[index] = (None if saved is None else
                                     xp_of(param.data).asarray(saved, dtype=param.data.dtype))
    optimizer.lr = meta["lr"]
    schedule.t = meta["schedule_t"]
    rng.bit_generator.state = meta["rng"]


def finished_weights(out, phase):
    """The model weights (state dict) at the end of `phase` in the run whose --out was `out`:
    what a later run starts from (the ConvNet demo's --ssl-from-baseline DIR).
    CheckpointError when that phase has no checkpoint there, or had not finished."""
    path = PhaseCheckpoints(out).path(phase)
    if not path.exists():
        raise CheckpointError(f"{path}: not found; {out} holds no {phase!r} checkpoint (train "
                              f"that run first, or give the --out of one that has)")
    meta, arrays = _read(path)
    if meta.get("phase") != phase or meta.get("epoch") != meta.get("epochs"):
        raise CheckpointError(f"{path}: {phase!r} stopped after epoch {meta.get('epoch')} of "
                              f"{meta.get('epochs')}; resume that run to finish it first")
    return {key[len("model/"):]: value for key, value in arrays.items()
            if key.startswith("model/")}
