"""Data: deterministic scale-up (tables and images), leak-free splits, user data files."""

import gzip
import struct

import numpy as np
import pytest

from joulegrid.data import images, scale, tables

from .wlkit import needs_fashion


def _table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [rng.normal(5, 2, n), rng.integers(0, 7, n), np.where(rng.random(n) < 0.3, 0, rng.random(n))]
    ).astype(np.float32)
    y = rng.integers(0, 2, n).astype(np.int8)
    return x, y


def test_scale_table_is_deterministic_and_prefix_stable():
    x, y = _table()
    a = scale.scale_table(x, y, 1000, seed=3, block=128)
    b = scale.scale_table(x, y, 700, seed=3, block=128)
    assert a[0].shape == (1000, 3) and a[1].shape == (1000,) and a[2].shape == (1000,)
    np.testing.assert_array_equal(a[0][:700], b[0])  # the first k rows are the same for any size
    np.testing.assert_array_equal(a[1][:700], b[1])
    np.testing.assert_array_equal(a[2][:700], b[2])


def test_scale_table_noise_integer_columns_zeros_and_origin():
    x, y = _table()
    xs, ys, origin = scale.scale_table(x, y, 5000, seed=1, block=256)
    perm = np.random.default_rng(1).permutation(len(x))
    real = x[perm]
    np.testing.assert_array_equal(xs[: len(x)], real)  # the real rows come first, in a fixed order
    src = real[origin]
    np.testing.assert_array_equal(ys, y[perm][origin])  # labels follow their origin
    np.testing.assert_array_equal(xs[:, 1], src[:, 1])  # integer column: no noise
    np.testing.assert_array_equal(xs[src[:, 2] == 0, 2], 0)  # zeros stay zero
    gen = slice(len(x), None)
    assert np.any(xs[gen, 0] != src[gen, 0])  # float columns get noise ...
    rel = np.abs(xs[gen, 0] - src[gen, 0]).max() / (np.subtract(*np.percentile(x[:, 0], [75, 25])) / 1.349)
    assert rel < 0.02 * 6  # ... of about 2 % of the robust sd (6 sigma bound)
    assert scale.integer_columns(x) == [1]


def test_grouped_split_keeps_copies_of_one_row_together():
    x, y = _table(100)
    _, _, origin = scale.scale_table(x, y, 2000, seed=2, block=256)
    tr, te = scale.grouped_split(len(origin), 0.2, seed=5, origin=origin)
    assert len(tr) + len(te) == 2000 and not set(tr) & set(te)
    assert not set(origin[tr]) & set(origin[te])  # no real row on both sides
    assert 0.1 < len(te) / 2000 < 0.3
    # distinct origins: an exact, seeded random split
    tr2, te2 = scale.grouped_split(50, 0.2, seed=5, origin=np.arange(50))
    assert len(te2) == 10 and len(tr2) == 40
    tr3, te3 = scale.grouped_split(50, 0.2, seed=5)
    np.testing.assert_array_equal(te2, te3)


def test_jets_real_and_scaled(tmp_path):
    from joulegrid.data import jets, load, prepare

    prepare("jets", 0, tmp_path / "n0.npz")
    d = load(tmp_path / "n0.npz")
    assert d["x"].shape == (27214, len(jets.COLUMNS)) and d["x"].dtype == np.float32
    assert set(np.unique(d["y"])) == {-1, 0, 1}
    assert int((d["y"] == 1).sum()) == 13115 and int((d["y"] == 0).sum()) == 14095
    np.testing.assert_array_equal(d["origin"], np.arange(27214))


def _idx(path, arr):
    dims = arr.shape
    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(images.read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        images.read_idx(tmp_path / "bad")


def test_augmentation_is_a_flip_and_shift_of_the_origin():
    rng = np.random.default_rng(0)
    x = np.zeros((30, 1, 32, 32), dtype=np.uint8)
    x[:, :, 2:30, 2:30] = rng.integers(1, 255, (30, 1, 28, 28))  # content inside the 2-pixel border
    y = np.arange(30) % 10
    xs, ys, origin = images.scale_up(x, y, 30 + 200, seed=4)
    np.testing.assert_array_equal(xs[:30], x)
    np.testing.assert_array_equal(ys, y[origin])
    for i in range(30, 230):
        src = x[origin[i]]
        candidates = [
            np.roll(f, (dy, dx), axis=(-2, -1))
            for f in (src, src[..., ::-1])
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        ]
        assert any(np.array_equal(xs[i], c) for c in candidates), i
        assert xs[i].sum() == src.sum()  # nothing cut or wrapped: the border absorbs the shift
    again = images.scale_up(x, y, 100, seed=4)
    np.testing.assert_array_equal(again[0], xs[:100])


@needs_fashion
def test_fashion_mnist_real_shape_and_classes():
    x, y = images.load_real(seed=96)
    assert x.shape == (70000, 1, 32, 32) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [7000] * 10
    assert x[:, :, :2].max() == 0 and x[:, :, :, -2:].max() == 0  # the zero padding


def test_fashion_missing_message(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "DIR", tmp_path)
    msg = images.missing()
    assert "dataset-fashion-mnist" in msg and "workloads.image_cnn.data" in msg


def test_user_tables_npz_parquet_root(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import uproot

    x, y = _table(50)
    np.savez(tmp_path / "t.npz", x=x, y=y, columns=np.array(["a", "b", "c"]))
    np.savez(tmp_path / "baler.npz", data=x, names=np.array(["a", "b", "c"]))
    cols = {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": y.astype(np.int32)}
    pq.write_table(pa.table(cols), tmp_path / "t.parquet")
    with uproot.recreate(tmp_path / "t.root") as f:  # a flat TTree, as analysis ntuples are
        f.mktree("jets", {k: np.asarray(v).dtype for k, v in cols.items()})
        f["jets"].extend({k: np.asarray(v) for k, v in cols.items()})
    with uproot.recreate(tmp_path / "t_rntuple.root") as f:  # uproot's default: an RNTuple
        f["jets"] = {k: np.asarray(v) for k, v in cols.items()}

    d = tables.load_table(tmp_path / "t.npz")
    np.testing.assert_array_equal(d["x"], x) and np.testing.assert_array_equal(d["y"], y)
    assert d["columns"] == ["a", "b", "c"]
    d = tables.load_table(tmp_path / "baler.npz")
    assert d["y"] is None and d["x"].shape == (50, 3)
    for name in ("t.parquet", "t.root", "t_rntuple.root"):
        d = tables.load_table(tmp_path / name, need_label=True)
        np.testing.assert_allclose(d["x"], x)
        np.testing.assert_array_equal(d["y"], y)
        assert d["columns"] == ["a", "b", "c"]
        d = tables.load_table(tmp_path / name, features=["c", "a"])
        np.testing.assert_allclose(d["x"], x[:, [2, 0]])


def test_user_table_errors_name_the_fix(tmp_path):
    x, y = _table(10)
    np.savez(tmp_path / "nolabel.npz", x=x)
    (tmp_path / "t.csv").write_text("a,b\n")
    with pytest.raises(tables.DataFormatError, match="no labels"):
        tables.load_table(tmp_path / "nolabel.npz", need_label=True)
    with pytest.raises(tables.DataFormatError, match="supported formats"):
        tables.load_table(tmp_path / "t.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tables.load_table(tmp_path / "absent.npz")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": x[:, 0]}), tmp_path / "t.parquet")
    with pytest.raises(tables.DataFormatError, match="params.label_column"):
        tables.load_table(tmp_path / "t.parquet", need_label=True)
    with pytest.raises(tables.DataFormatError, match="params.features"):
        tables.load_table(tmp_path / "t.parquet", features=["zz"])
