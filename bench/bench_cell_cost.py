#!/usr/bin/env python3
"""Fixed cost of one cell: a training cell end to end vs the smallest torch training script (import
torch, one Adam step; goal <= 1.15x wall and <= 1.2x CPU), and vs `python -c "import torch"` (context).

The trivial cell is what rule measure runs (`joulegrid run-cell --grid <snapshot> --out <run file>`,
a subprocess, its output into a log) for baler_ae, train (or --phase infer), cpu, fp32, on 640 rows:
one batch (train: 512 rows at batch 512; infer: the 128 test rows at batch 128, with the reference
model), 1 epoch, no warm-up, measure.idle_baseline_s 0, measure.min_window_s 0, hotspots never, the
default meters (measure.meters [auto]) and 1 thread. Everything it does besides torch's import is
joulegrid's fixed cost per cell: Python start-up, imports, meter set-up (codecarbon's hardware
detection: done by the first cell on a host, read back from <resources>/hosts/ by the next ones),
data load, FLOP counting, the measured batch, Parquet write. The first cell (the breakdown below)
is a host's first; the timed rounds are the cells after it, as in a grid.

Prints the breakdown of one cell (imports by `python -X importtime`, the row's own timings), then
per round (alternating which goes first) the wall and CPU seconds of each side, and the median
ratios, the goal's LAST. torch.optim's step imports torch._dynamo (1-2 s) in any training process,
a cost joulegrid cannot remove, hence the training script as the floor; inference cells never
import it (src/joulegrid/torch_startup.py), and an inference cell is set beside `import torch`.

    python bench/bench_cell_cost.py [--rounds 7] [--phase train|infer]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import BIN, REPO, alternate, env, host, report_medians, report_round, timed

sys.path.insert(0, str(REPO / "src"))

TINY = {
    "grid": {
        "workloads": ["baler_ae"],
        "phases": ["train", "infer"],
        "devices": ["cpu"],
        "precisions": ["fp32"],
        "variants": ["baseline"],
        "batch_sizes": [512],
        "repeats": 1,
    },
    "workloads": {"baler_ae": {"rows": 640, "epochs": 1}},
    "measure": {
        "threads": 1,
        "warmup_batches": 0,
        "idle_baseline_s": 0,
        "min_window_s": 0,
        "hotspots": "never",
        "meters": ["auto"],
    },
}


# The smallest torch training script: one Adam step on baler_ae's input width (its first step
# imports torch._dynamo, as in every training cell).
TORCH_STEP = (
    "import torch; m = torch.nn.Linear(24, 24); o = torch.optim.Adam(m.parameters()); "
    "m(torch.randn(512, 24)).square().mean().backward(); o.step()"
)


def importtime(cmd: list[str]) -> dict[str, float]:
    """Cumulative import seconds: of each module in EXACT (at whatever depth it was first imported,
    e.g. torch inside the runner, pandas inside codecarbon's detection thread) and of joulegrid's
    own modules imported at top level."""
    err = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, env=env()).stderr
    out: dict[str, float] = {}
    for line in err.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        secs, name = int(m.group(1)) / 1e6, m.group(3)
        if name in EXACT:
            out[name] = max(out.get(name, 0.0), secs)
        elif len(m.group(2)) <= 1 and name.split(".")[0] == "joulegrid":
            out["joulegrid"] = out.get("joulegrid", 0.0) + secs
    return out


EXACT = ("torch", "torch._dynamo", "codecarbon", "pandas", "pyarrow", "numpy", "yaml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--phase", choices=["train", "infer"], default="train")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from joulegrid import config as C
    from joulegrid import grid as G
    from joulegrid import spec as SP
    from joulegrid.data import prepare
    from joulegrid.runner import train_reference

    batch = 512 if args.phase == "train" else 128  # exactly one batch: 640 rows = 512 train + 128 test
    jg = [str(BIN / "joulegrid")] if (BIN / "joulegrid").exists() else [sys.executable, "-m", "joulegrid"]
    with tempfile.TemporaryDirectory(prefix="jg-bench-cell-") as tmp:
        tmp = Path(tmp)
        over = {
            **TINY,
            "grid": {**TINY["grid"], "phases": [args.phase], "batch_sizes": [batch]},
            "results": str(tmp / "results"),
            "resources_dir": str(tmp / "resources"),
        }
        cfg, sites = C.load(config_args=over)
        sb = SP.SpecBuilder(cfg, sites)
        cell = next(c for c in G.expand(cfg, sb.hashes()).cells if c.phase == args.phase)
        snapshot = sb.snapshot_path(write=True)  # what a run writes when it starts
        data = sb.data_path("baler_ae")
        Path(data).parent.mkdir(parents=True)
        prepare("jets", 640, data)
        if args.phase == "infer":
            spec, _, model = SP.reference_spec_from_snapshot(snapshot, "baler_ae")
            train_reference(spec, model, data, threads=1)
        k = iter(range(1, 10**6))

        def cell_cmd() -> list[str]:  # the next repeat of the cell: a new run file each time
            out = dataclasses.replace(cell, repeat=next(k)).path(cfg["results"])
            return [*jg, "run-cell", "--grid", snapshot, "--out", out, "--threads", "1", "--attempt", "1"]

        torch_cmd = [sys.executable, "-c", "import torch"]
        print(f"host: {host()}")
        print(
            f"trivial cell: {cell.id} (640 rows = 512 train + 128 test: one batch, 1 epoch, no warm-up/idle/min "
            "window/hotspots, meters [auto], 1 thread)"
        )
        # breakdown of one cell
        timed(torch_cmd)  # warm the page cache for both
        timed(cell_cmd())
        imp = importtime(["-m", "joulegrid", *cell_cmd()[len(jg) :]])
        imp_torch = importtime(["-c", "import torch"]).get("torch", 0.0)
        cmd = cell_cmd()
        w, c = timed(cmd, tmp / "cell.log")
        row = pq.read_table(cmd[cmd.index("--out") + 1]).to_pylist()[0]
        assert row["status"] == "ok", row.get("error_message")
        run_s = (row["finished_at"] - row["started_at"]).total_seconds()
        print("breakdown of one cell (seconds):")
        print(f"  whole process (wall)                  {w:6.2f}")
        print(f"  import torch alone (-X importtime)    {imp_torch:6.2f}")
        notes = {
            "torch._dynamo": "  (lazy: torch.optim's first step)",
            "pandas": "  (pyarrow, converting the row; on a host's first cell codecarbon's detection)",
        }
        for name in (*EXACT, "joulegrid"):
            if name in imp:
                print(f"  import {name:<30} {imp[name]:6.2f}{notes.get(name, '')}")
        print(f"  runner.run(): started..finished       {run_s:6.2f}")
        print(f"    set-up (data, model, FLOPs) setup_s {row['setup_s']:6.2f}")
        print(
            f"    waiting for the meters' set-up      {row['meters_ready_s']:6.2f}  (codecarbon detection, overlapped; "
            "read back on a host's second cell)"
        )
        print(f"    measured window wall_s              {row['wall_s']:6.2f}  ({row['n_batches']} batches)")
        print(f"  rest: interpreter, imports before run(), Parquet write, exit  {w - run_s:6.2f}")
        sides = [("import torch", torch_cmd), ("cell", cell_cmd)]
        if args.phase == "train":  # what any torch training script pays: torch.optim's step imports torch._dynamo
            sides.append(("torch step", [sys.executable, "-c", TORCH_STEP]))
        res = [alternate(r, sides, tmp) for r in range(args.rounds)]
        print("context: a cell vs import torch:")
        ratios = [report_round(r, "import torch", "cell", x) for r, x in enumerate(res)]
        report_medians(
            "cell/import torch", ratios, "context, no goal" if args.phase == "train" else "inference: no torch._dynamo"
        )
        if args.phase == "train":
            print("the goal: a training cell vs the smallest torch training script (import torch, one Adam step):")
            step = [report_round(r, "torch step", "cell", x) for r, x in enumerate(res)]
            report_medians("cell/torch step", step, "goal <= 1.15 wall, <= 1.2 CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
