"""Fixtures of the workload tests; helpers live in wlkit.py."""

from __future__ import annotations

import pytest

from .wlkit import CellKit


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread in this folder's in-process torch work (the CI machine has 2 cores,
    shared with Snakemake jobs in other tests); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cells(tmp_path_factory):
    return CellKit(tmp_path_factory.mktemp("wl-cells"))
