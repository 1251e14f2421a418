"""Each built-in workload: data and model shapes, training lowers the loss, the quality metric
on a hand-made example, workload-specific columns."""

import numpy as np
import pytest
import torch

from joulegrid.config import workload_settings
from joulegrid.workloads.registry import create

from .wlkit import TINY_ROWS, needs_fashion

WORKLOADS = [
    "baler_ae",
    "jet_tagger",
    pytest.param("image_cnn", marks=needs_fashion),
]


def _workload(cells, name, **settings):
    from joulegrid.workloads.registry import workload_class

    cfg = {"workloads": {name: {"rows": TINY_ROWS[name], **settings}}}
    st = workload_settings(cfg, name)
    wl = create(name, st, seed=1)
    split = wl.load_data(cells.data_path(workload_class(name, st).dataset, TINY_ROWS[name]))
    return wl, split


@pytest.mark.parametrize("name", WORKLOADS)
def test_shapes(cells, name):
    wl, split = _workload(cells, name)
    assert split.n_train + split.n_test <= TINY_ROWS[name]
    assert split.n_test == pytest.approx(0.2 * (split.n_train + split.n_test), abs=1)
    model = wl.build_model(split)
    xb = wl.example_batch(split, 8).float()
    out = model(xb)
    if name == "baler_ae":
        assert split.x_train.shape[1:] == (24,) and out.shape == (8, 24)
        assert split.y_train is None
        assert wl.extra_columns() == {"compression_ratio": 2.0}  # 24 columns / latent 12
    elif name == "jet_tagger":
        assert split.x_train.shape[1:] == (24,) and out.shape == (8, 1)
        assert set(np.unique(split.y_train)) <= {0.0, 1.0}
    else:
        assert split.x_train.shape[1:] == (3, 32, 32) and split.x_train.dtype == np.uint8
        assert out.shape == (8, 10)
        assert np.array_equal(split.x_train[:, 0], split.x_train[:, 2])  # grey repeated to 3 channels


@pytest.mark.parametrize("name", WORKLOADS)
def test_short_training_lowers_the_loss(cells, name):
    torch.manual_seed(0)
    wl, split = _workload(cells, name)
    model = wl.build_model(split)
    opt = wl.make_optimizer(model)
    n = min(64 if name == "image_cnn" else 256, split.n_train)
    x = torch.as_tensor(split.x_train[:n]).float()
    y = torch.as_tensor(split.y_train[:n]) if split.y_train is not None else None
    with torch.no_grad():
        before = wl.loss(model, x, y).item()
    for _ in range(20):
        opt.zero_grad()
        wl.loss(model, x, y).backward()
        opt.step()
    with torch.no_grad():
        after = wl.loss(model, x, y).item()
    assert after < 0.9 * before, (before, after)


def test_baler_evaluate_hand_made():
    wl = create("baler_ae", workload_settings({}, "baler_ae"), 0)
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    out = torch.tensor([[1.0, 0.0], [3.0, 5.0]])  # squared errors 0, 4, 0, 1 -> mean 1.25
    assert wl.evaluate(out, x, None) == {"recon_mse": pytest.approx(1.25), "loss": pytest.approx(1.25)}
    out64 = out.double()  # fp64 runs stay fp64
    assert wl.evaluate(out64, x, None)["recon_mse"] == pytest.approx(1.25)


def test_jet_tagger_evaluate_hand_made():
    wl = create("jet_tagger", workload_settings({}, "jet_tagger"), 0)
    # logits of 4 signal + 5 background jets, ordered as the probabilities of test_wl_quality
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.85, 0.6, 0.3, 0.1, 0.05])
    logits = torch.tensor(np.log(p / (1 - p)), dtype=torch.float32).unsqueeze(1)
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=np.float32)
    m = wl.evaluate(logits, None, y)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["bkg_rejection_at_50"] == pytest.approx(5.0)
    # p > 0.5: signal right 3 of 4 (0.2 wrong); background right 3 of 5 (0.85, 0.6 wrong) -> 6/9
    assert m["accuracy"] == pytest.approx(6 / 9)
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert m["loss"] == pytest.approx(bce, rel=1e-5)


def test_image_cnn_evaluate_hand_made():
    wl = create("image_cnn", workload_settings({}, "image_cnn"), 0)
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    m = wl.evaluate(logits, None, np.array([0, 1, 1, 0]))  # 3 of 4 right
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["loss"] > 0


def test_jet_tagger_drops_unlabelled_jets_and_reads_user_tables(tmp_path, cells):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int8)
    y[:10] = -1
    np.savez(tmp_path / "top.npz", x=x, y=y)
    st = workload_settings({"workloads": {"jet_tagger": {"data": str(tmp_path / "top.npz")}}}, "jet_tagger")
    wl = create("jet_tagger", st, 0)
    split = wl.load_data(str(tmp_path / "top.npz"))
    assert split.n_train + split.n_test == 290 and split.n_features == 5
    st["rows"] = 1000  # scaled up in memory; copies of one jet stay on one side
    split = create("jet_tagger", st, 0).load_data(str(tmp_path / "top.npz"))
    assert 900 < split.n_train + split.n_test <= 1000
    np.savez(tmp_path / "multi.npz", x=x, y=np.arange(300) % 3)
    with pytest.raises(ValueError, match="labels 0"):
        create("jet_tagger", st, 0).load_data(str(tmp_path / "multi.npz"))


def test_image_cnn_reads_user_images(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", x=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8), y=np.arange(50) % 4)
    st = workload_settings({"workloads": {"image_cnn": {"data": str(tmp_path / "img.npz")}}}, "image_cnn")
    wl = create("image_cnn", st, 0)
    split = wl.load_data(str(tmp_path / "img.npz"))
    assert split.x_train.shape[1:] == (3, 28, 28)
    assert wl.build_model(split)(torch.as_tensor(split.x_test[:2]).float()).shape == (2, 4)
