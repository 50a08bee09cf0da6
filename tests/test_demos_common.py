"""demos.common: the checks every demo relies on."""

import numpy as np
import pytest

from demos import common
from minissl import models


def test_compaction_report_refuses_a_compacted_model_that_disagrees(monkeypatch):
    """'Same predictions' is checked, not assumed: a disagreeing small model is an error."""
    model = models.mlp((4, 3, 2))
    inputs = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    answers = iter([np.zeros(10, np.int64), np.r_[np.ones(3, np.int64), np.zeros(7, np.int64)]])
    monkeypatch.setattr(common, "predict", lambda _model, _inputs: next(answers))
    with pytest.raises(RuntimeError, match="disagrees with the sparse one on 3 of 10 images"):
        common.compaction_report(model, inputs, np.zeros(10, np.int64))
