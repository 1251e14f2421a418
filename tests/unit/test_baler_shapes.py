"""The Baler-style autoencoder: architecture, shapes, data split, scaling."""

import numpy as np
import torch

from joulegrid.data.scale import grouped_split
from joulegrid.workloads.baler_ae import make_autoencoder
from joulegrid.workloads.tabular import robust_scale


def test_architecture_is_baler_ae():
    m = make_autoencoder(24, 12)
    lin = [layer for layer in m.modules() if isinstance(layer, torch.nn.Linear)]
    dims = [(layer.in_features, layer.out_features) for layer in lin]
    assert dims == [(24, 200), (200, 100), (100, 50), (50, 12), (12, 50), (50, 100), (100, 200), (200, 24)]
    acts = [a for a in m.modules() if isinstance(a, torch.nn.LeakyReLU)]
    assert len(acts) == 6  # none after the latent layer or the output


def test_shapes_compress_decompress():
    m = make_autoencoder(24, 8)
    x = torch.randn(5, 24)
    z = m.encode(x)
    assert z.shape == (5, 8)
    assert m.decode(z).shape == (5, 24)
    assert m(x).shape == (5, 24)


def test_split_is_disjoint_and_seeded():
    tr, te = grouped_split(1000, 0.2, seed=1)
    assert len(te) == 200 and len(tr) == 800 and not set(tr) & set(te)
    tr2, te2 = grouped_split(1000, 0.2, seed=1)
    assert (te == te2).all()


def test_robust_scale_fits_on_train_only_and_clips():
    rng = np.random.default_rng(0)
    train = rng.normal(5, 2, size=(1000, 3)).astype(np.float32)
    test = np.array([[5, 5, 1e9]], dtype=np.float32)
    s_train, s_test = robust_scale(train, test)
    assert abs(float(np.median(s_train[:, 0]))) < 1e-6
    assert s_test[0, 2] == 20.0  # clipped outlier
