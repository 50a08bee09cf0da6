"""Trainer.ssl on real digits: the prox epochs, the cut, the weights compaction drops set to
zero (outputs unchanged), and fine-tuning that keeps them at zero."""

import numpy as np

from minissl import data, nn, ssl, train
from minissl.ssl import GroupKind, GroupRule


def small_convnet():
    """conv 4@5x5 -> ReLU -> pool 2 -> conv 6@3x3 -> ReLU -> flatten -> fc 10 on 28x28."""
    rng = np.random.default_rng(3)
    return nn.Sequential(nn.Conv2d(1, 4, 5, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, rng=rng), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 10 * 10, 10, rng=rng))


def digit_split():
    """The first 300 digits of the bundled sample to train on, the next 200 to test."""
    sample = data.mnist_sample()
    images = data.to_float_images(sample.train_images[:500], flatten=False)[:, None]  # (N, 1, 28, 28)
    labels = sample.train_labels[:500].astype(np.int64)
    return images[:300], labels[:300], images[300:], labels[300:]


def test_ssl_zeroes_the_columns_that_read_a_removed_filter_and_keeps_them_zero(capsys):
    """conv1's filter 1 is zero (weights and bias) when SSL starts, and only conv2's shape
    groups are regularized, too weakly to zero any: after the cut, conv2's 6 x 9 weights
    on channel 1 are set to zero with the test error unchanged, and fine-tuning keeps them
    there (they read only zeros, so their gradient is zero)."""
    model = small_convnet()
    model[0].weight.data[1] = 0
    model[0].bias.data[1] = 0
    trainer = train.Trainer(digit_split(), train.SGDConfig(lr=0.02),
                            train.DataSchedule(batch_size=50))
    lasso = ssl.GroupLasso(model, ssl.SSLConfig([GroupRule("3", GroupKind.SHAPE, 1e-6)]))
    outcome = trainer.ssl(model, lasso, "SSL", train.SSLSchedule(epochs=1, finetune_epochs=1,
                                                                 finetune_lr=0.02, cut=0))
    assert outcome.dropped == {"3": 6 * 9}
    assert not np.any(model[3].weight.data[:, 1])
    assert np.count_nonzero(model[3].weight.data) == 6 * 3 * 9
    printed = capsys.readouterr().out
    assert "54 weights that compaction drops anyway" in printed
    assert f"test error unchanged, {outcome.error_after_cut:.2%}" in printed
