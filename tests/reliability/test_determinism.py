"""The same CPU cell with the same seed gives the same quality metric (in-process, no meters)."""

import math

import pytest
from workloads.wlkit import CellKit, assert_ok, base_config


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield CellKit(tmp_path_factory.mktemp("determinism"))
    torch.set_num_threads(before)


@pytest.mark.parametrize("phase", ["train", "infer"])
def test_same_cell_same_seed_same_quality(kit, phase):
    runs = [kit.run("baler_ae", phase, cfg=base_config()) for _ in range(2)]
    for r in runs:
        assert_ok(r)
    a, b = (r["quality"] for r in runs)
    assert a is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (a, b)
    assert runs[0]["seed"] == runs[1]["seed"] and runs[0]["run_id"] != runs[1]["run_id"]
    if phase == "train":
        assert runs[0]["epoch_loss"] == pytest.approx(runs[1]["epoch_loss"], rel=1e-6)


def test_another_repeat_uses_another_seed(kit):
    r0, r1 = kit.run("baler_ae", "train", repeat=0), kit.run("baler_ae", "train", repeat=1)
    assert r1["seed"] == r0["seed"] + 1 and r0["quality"] != r1["quality"]
