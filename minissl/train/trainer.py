"""The Trainer: training phases with per-step cosine SGD, checkpoints and records, and the
SSL schedule of the paper (prox epochs -> the cut -> masked fine-tuning).

    trainer = Trainer((x_train, y_train, x_test, y_test), SGDConfig(lr=0.05),
                      DataSchedule(batch_size=100))
    trainer.fit(model, "baseline", epochs=6)
    outcome = trainer.ssl(model, lasso, "SSL", SSLSchedule(epochs=6, finetune_epochs=4))

With a RunRecord (minissl.train.records.open_run), every epoch is added to results.json and
checkpointed; a resumed run continues each phase after its last finished epoch and ends
with the same weights as a run never interrupted. Without one, nothing is written.
"""

import time
from dataclasses import dataclass

import numpy as np

from minissl import compact, optim
from minissl.nn import CompactionError, StateDictError
from minissl.train import checkpoint
from minissl.train.config import DataSchedule, SGDConfig
from minissl.train.loop import error_rate, train_epoch


@dataclass(frozen=True)
class SSLOutcome:
    """What Trainer.ssl did: the cut's report (minissl.ssl CutReport), the test error just
    before and just after it, and the weights set to zero after it because compaction drops
    them ({layer name: count}, minissl.compact.zero_dropped_weights; None when the model
    cannot be compacted)."""
    cut: object
    error_before_cut: float
    error_after_cut: float
    dropped: dict = None


class Trainer:
    """Trains models on one split (x_train, y_train, x_test, y_test) with one optimizer
    configuration and data schedule. Shapes: x (N, ...) float32, y (N,) int64.

    `record` (a RunRecord, or None) receives every epoch and holds the checkpoints;
    `verbose` prints one line per epoch (and per cut).
    """

    def __init__(self, split, sgd=SGDConfig(), data=DataSchedule(), record=None, verbose=True):
        if len(split) != 4:
            raise ValueError("split must be (x_train, y_train, x_test, y_test)")
        for inputs, labels, part in ((split[0], split[1], "training"), (split[2], split[3], "test")):
            if len(inputs) != len(labels) or len(inputs) == 0:
                raise ValueError(f"the {part} set needs as many labels as inputs, at least one: "
                                 f"got {len(inputs)} inputs and {len(labels)} labels")
        self.split, self.sgd, self.data = tuple(split), sgd, data
        self.record, self.verbose = record, verbose

    def _say(self, text):
        if self.verbose:
            print(text)

    def error(self, model):
        """The model's error rate on the test images."""
        return error_rate(model, self.split[2], self.split[3])

    def fit(self, model, phase, epochs, lr=None, regularizer=None, describe=None):
        """Train `model` for `epochs` from `lr` (default the SGDConfig's) to 0 on a per-step
        cosine; returns the phase's epoch records (dicts: loss, train and test error,
        seconds, and what `describe(model) -> (fields, text)` adds after each epoch).

        `regularizer` hooks into every step (train_epoch). Raises Diverged when the loss
        stops being finite. With a record: each epoch is added to it and checkpointed under
        `phase`; on resume the phase continues after its last finished epoch, with every
        state a step depends on restored (skipped when it had finished).
        """
        x_train, y_train = self.split[0], self.split[1]
        optimizer = optim.SGD(model.parameters(), lr=lr or self.sgd.lr,
                              momentum=self.sgd.momentum, weight_decay=self.sgd.weight_decay)
        steps_per_epoch = -(-len(x_train) // self.data.batch_size)
        schedule = optim.CosineSchedule(optimizer, total_steps=epochs * steps_per_epoch)
        rng = np.random.default_rng(self.data.seed)
        history, first_epoch = self._resume(phase, epochs, model, optimizer, schedule, rng)
        for epoch in range(first_epoch, epochs + 1):
            start = time.perf_counter()
            loss, train_error = train_epoch(model, optimizer, schedule, x_train, y_train,
                                            self.data.batch_size, rng, f"{phase} {epoch}/{epochs}",
                                            regularizer, self.data.augment)
            seconds = time.perf_counter() - start
            entry = {"phase": phase, "epoch": epoch, "loss": loss, "train_error": train_error,
                     "test_error": self.error(model), "seconds": seconds}
            extra, text = describe(model) if describe is not None else ({}, "")
            entry.update(extra)
            if hasattr(regularizer, "norm_histograms"):  # the group norms, for the run report
                entry["group_norms"] = regularizer.norm_histograms()
            history.append(entry)
            if self.record is not None:
                self.record.add_epoch(entry)
                if self.record.checkpoints is not None:
                    self.record.checkpoints.save(phase, epoch, epochs, model, optimizer,
                                                 schedule, rng, history)
            self._say(f"{phase} epoch {epoch:2d}/{epochs}: loss {loss:.4f}  train error "
                      f"{train_error:.2%}  test error {entry['test_error']:.2%}  "
                      f"{seconds:.1f} s{text}")
        return history

    def _resume(self, phase, epochs, model, optimizer, schedule, rng):
        """(epoch records so far, first epoch to train) of `phase`, restored from its
        checkpoint when the run resumes and has one, else ([], 1)."""
        saver = None if self.record is None else self.record.checkpoints
        saved = None if saver is None else saver.load(phase, epochs)
        if saved is None:
            return [], 1
        meta, arrays = saved
        checkpoint.restore(meta, arrays, model, optimizer, schedule, rng)
        for entry in meta["history"]:
            self.record.add_epoch(entry)
        done = "finished" if meta["epoch"] == epochs else "continues"
        self._say(f"{phase}: resumed from its checkpoint after epoch {meta['epoch']}/{epochs} "
                  f"({done})")
        return list(meta["history"]), meta["epoch"] + 1

    def ssl(self, model, lasso, name, schedule, describe=None, prox_phase=None):
        """The SSL schedule (config.SSLSchedule) on `model` with `lasso` (a
        minissl.ssl.GroupLasso): prox epochs (phase `prox_phase`, default `name`), the cut,
        then masked fine-tuning (phase "<name> fine-tune"). Returns an SSLOutcome.
        Raises checkpoint.CheckpointError when schedule.phases_from has no finished phase
        that fits."""
        if lasso.config.min_prox_lr > 0:
            self._say(f"{name}: prox threshold max(lr, {lasso.config.min_prox_lr:g}) * lambda "
                      f"(--prox-lr-floor)")
        prox_phase = prox_phase or name
        if schedule.phases_from is None:
            self.fit(model, prox_phase, schedule.epochs, schedule.lr, lasso, describe)
        else:
            self.load_finished_phase(model, schedule.phases_from, prox_phase)
        error_before = self.error(model)
        cut = lasso.zero_small_groups(schedule.cut)
        error_after = self.error(model)
        self._say(f"{name} cut: {cut.groups_zeroed} groups with 0 < norm < {cut.threshold:g} set "
                  f"to exactly zero (largest such norm {cut.largest_norm_zeroed:.2e}); test "
                  f"error {error_before:.2%} -> {error_after:.2%}")
        dropped = self._zero_dropped_weights(model, name, error_after)
        if schedule.finetune_epochs:
            self.fit(model, f"{name} fine-tune", schedule.finetune_epochs, schedule.finetune_lr,
                     lasso.hold_zeros(), describe)
        return SSLOutcome(cut, error_before, error_after, dropped)

    def _zero_dropped_weights(self, model, name, error):
        """After the cut: zero the weights compaction will drop (they read a channel no
        filter produces any more, or feed an output no layer reads), so that the zero
        columns and rows counted from here on are the structure the compacted model has.
        Checks that the test error stays `error` (the outputs do not change); returns
        {layer: weights zeroed}, or None when the model cannot be compacted."""
        try:
            dropped = compact.zero_dropped_weights(model, self.split[2].shape[1:])
        except CompactionError as problem:
            self._say(f"{name}: the weights compaction drops are left as they are ({problem})")
            return None
        if dropped:
            now = self.error(model)
            if now != error:
                raise RuntimeError(f"{name}: zeroing the weights compaction drops changed the "
                                   f"test error from {error:.4%} to {now:.4%}")
            layers = ", ".join(f"{layer} {count}" for layer, count in dropped.items())
            self._say(f"{name}: {sum(dropped.values())} weights that compaction drops anyway "
                      f"(reading removed channels or feeding removed outputs) set to zero "
                      f"({layers}); test error unchanged, {now:.2%}")
        return dropped

    def load_finished_phase(self, model, out, phase):
        """Load into `model` the weights `phase` finished with in the run whose folder was
        `out`; CheckpointError when there are none or they do not fit the model."""
        try:
            model.load_state_dict(checkpoint.finished_weights(out, phase))
        except StateDictError as error:
            raise checkpoint.CheckpointError(f"{out}: {phase!r} does not fit this model "
                                             f"({error})") from None
        self._say(f"{phase}: prox epochs not trained; weights from the finished phase in {out}")
