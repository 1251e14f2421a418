"""Helpers (not fixtures: see conftest.py) for the workload / precision / FLOPs tests: tiny prepared datasets and a
one-cell runner (in-process, no energy meters, no Snakemake) so that each case costs well under a second."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE) not in sys.path:  # the bring-your-own package byo_pkg lives next to this file
    sys.path.insert(0, str(HERE))

from joulegrid.data import images  # noqa: E402 - after byo_pkg's folder is on sys.path

needs_fashion = pytest.mark.skipif(
    images.missing() is not None, reason=f"Fashion-MNIST not installed here: {images.missing()}"
)

# Small sizes: the whole area must stay fast on 2 shared cores.
TINY_ROWS = {"baler_ae": 1500, "jet_tagger": 1500, "image_cnn": 400}


def base_config(workloads: dict | None = None, **top) -> dict:
    cfg = {
        "grid": {"workloads": ["baler_ae"], "batch_sizes": [64], "precisions": ["fp32"], "phases": ["train", "infer"]},
        "workloads": {
            "baler_ae": {"rows": TINY_ROWS["baler_ae"], "epochs": 1},
            "jet_tagger": {"rows": TINY_ROWS["jet_tagger"], "epochs": 2},
            "image_cnn": {"samples": TINY_ROWS["image_cnn"], "epochs": 1},
        },
        "measure": {"warmup_batches": 1, "threads": 1, "min_window_s": 0},  # one inference pass
    }
    for name, st in (workloads or {}).items():
        cfg["workloads"][name] = {**cfg["workloads"].get(name, {}), **st}
    for k, v in top.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


class CellKit:
    """Builds specs from a config and runs single cells with joulegrid.runner.CellRunner."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._data: dict[tuple[str, int], str] = {}
        self._refs: dict[str, str] = {}

    def data_path(self, dataset: str, rows: int) -> str:
        from joulegrid.data import prepare

        key = (dataset, rows)
        if key not in self._data:
            p = self.tmp / f"{dataset}-n{rows}.npz"
            prepare(dataset, rows, p)
            self._data[key] = str(p)
        return self._data[key]

    def builder(self, cfg: dict):
        from joulegrid import config as C
        from joulegrid import spec as SP
        from joulegrid.sites import load_sites

        cfg = copy.deepcopy(cfg)
        C.prepare(cfg, REPO)
        return SP.SpecBuilder(cfg, load_sites(REPO / "config" / "sites.yaml"))

    def run(
        self,
        workload: str,
        phase: str = "train",
        precision: str = "fp32",
        variant: str = "baseline",
        batch_size: int = 64,
        cfg: dict | None = None,
        repeat: int = 0,
        keep_runner: bool = False,
    ):
        from joulegrid.grid import Cell
        from joulegrid.runner import CellRunner, train_reference
        from joulegrid.spec import settings_hash

        cfg = cfg or base_config()
        cfg = copy.deepcopy(cfg)
        cfg["grid"]["workloads"] = [workload]
        sb = self.builder(cfg)
        ds = sb.dataset(workload)
        data = self.data_path(*ds) if ds else sb.workload(workload).get("data")
        model = None
        if phase == "infer":
            h = settings_hash({"w": sb.workload(workload), "d": data})
            if h not in self._refs:
                ref_spec = sb.spec(Cell("local", workload, "train", "cpu", "fp32", "baseline", batch_size, 0))
                out = self.tmp / f"ref-{workload}-{h}.pt"
                train_reference(ref_spec, str(out), data, threads=1)
                self._refs[h] = str(out)
            model = self._refs[h]
        spec = sb.spec(Cell("local", workload, phase, "cpu", precision, variant, batch_size, repeat))
        runner = CellRunner(spec, str(self.tmp / "unused.parquet"), data, model, threads=1, measure_energy=False)
        row = runner.run()
        return (row, runner) if keep_runner else row


def assert_ok(row: dict) -> None:
    assert row["status"] == "ok", (
        f"{row['cell_id']}: {row['status']} {row.get('error_type')}: "
        f"{row.get('error_message')}{row.get('skip_reason') or ''}"
    )
