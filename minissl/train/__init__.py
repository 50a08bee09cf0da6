"""The experiment engine: what every experiment of the paper runs, importable on its own.

- `config`: SGDConfig, DataSchedule, SSLSchedule, TimingConfig (frozen dataclasses, checked);
- `loop`: one epoch of SGD with the regularizer's hooks, predict, error_rate;
- `trainer`: Trainer.fit (a training phase) and Trainer.ssl (prox -> cut -> fine-tune);
- `report`: compaction_report (compact, check equal predictions, time) and table helpers;
- `records`: open_run, RunRecord (results.json, atomic), OutputLock, Diverged;
- `checkpoint`: per-epoch checkpoints, so a resumed run ends with the same weights.

A notebook needs only the first four; the records and checkpoints are for long runs.
"""

from minissl.train.config import DataSchedule, SGDConfig, SSLSchedule, TimingConfig
from minissl.train.loop import error_rate, predict, train_epoch
from minissl.train.records import Diverged, RunFolderError, RunRecord, open_run
from minissl.train.report import compaction_report
from minissl.train.trainer import SSLOutcome, Trainer

__all__ = ["DataSchedule", "SGDConfig", "SSLSchedule", "TimingConfig", "Trainer", "SSLOutcome",
           "train_epoch", "predict", "error_rate", "compaction_report", "open_run",
           "RunRecord", "RunFolderError", "Diverged"]
