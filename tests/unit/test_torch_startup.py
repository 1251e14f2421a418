"""torch_startup.defer_dynamo_import: FLOP counting and torch.optim without importing
torch._dynamo, and torch's own dynamo.disable once something has imported it.

Each check runs in a fresh interpreter: in the test process torch._dynamo may already be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import subprocess_env


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


PRELUDE = """
import json, sys
import torch
from torch.utils.flop_counter import FlopCounterMode
from joulegrid.torch_startup import ATTR, _Deferred, defer_dynamo_import

def count(model, x):
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    return fc.get_total_flops()

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
x = torch.randn(32, 8)
"""


def test_flops_and_optimizer_run_without_importing_dynamo():
    got = _run(
        PRELUDE
        + """
n = defer_dynamo_import()
flops = count(model, x)
opt = torch.optim.SGD(model.parameters(), lr=0.1)   # add_param_group
opt.zero_grad()
state = opt.state_dict()
opt.load_state_dict(state)
print(json.dumps({"deferred": n, "flops": flops, "dynamo": "torch._dynamo" in sys.modules}))
"""
    )
    # 2 * (32*8*16 + 32*16*4) forward; backward of both layers: grad of input (second layer only) + weights
    fwd = 2 * (32 * 8 * 16 + 32 * 16 * 4)
    assert got["deferred"] >= 5, (
        "torch 2.13's _disable_dynamo wrappers were not found: the import is no longer deferred"
    )
    assert got["flops"] == fwd + 2 * (32 * 16 * 4) + fwd  # the same count torch gives with dynamo imported
    assert got["dynamo"] is False


def test_same_flops_as_torch_without_the_deferral():
    plain = _run(
        PRELUDE
        + """
print(json.dumps({"flops": count(model, x), "dynamo": "torch._dynamo" in sys.modules}))
"""
    )
    deferred = _run(
        PRELUDE
        + """
defer_dynamo_import()
print(json.dumps({"flops": count(model, x), "dynamo": "torch._dynamo" in sys.modules}))
"""
    )
    assert plain["dynamo"] is True, (
        "torch no longer imports torch._dynamo for FLOP counting: torch_startup may be obsolete"
    )
    assert deferred == {"flops": plain["flops"], "dynamo": False}


def test_real_disable_once_dynamo_is_imported():
    got = _run(
        PRELUDE
        + """
defer_dynamo_import()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
fn = torch.optim.Optimizer.zero_grad.__wrapped__
before = type(getattr(fn, ATTR)).__name__
import torch._dynamo   # what torch.compile does
opt.zero_grad()
after = getattr(fn, ATTR)
compiled = torch.compile(lambda t: t * 2, backend="eager")(torch.ones(2)).tolist()
print(json.dumps({"before": before, "after_is_deferred": isinstance(after, _Deferred),
                  "after_module": getattr(after, "__module__", ""), "compiled": compiled,
                  "again": defer_dynamo_import()}))
"""
    )
    assert got["before"] == "_Deferred"
    assert got["after_is_deferred"] is False and got["after_module"].startswith("torch._dynamo")
    assert got["compiled"] == [2.0, 2.0]
    assert got["again"] == 0  # nothing to defer once torch._dynamo is imported


def test_cells_keep_dynamo_out_of_the_measured_window(tmp_path):
    """An fp32 inference cell (FLOP counting, reference model, measured batches, its hotspot profiling
    passes) runs without torch._dynamo at all (int8 cells import torchao, which imports it itself). A training cell
    needs it (torch.optim's first step imports it): it is imported in the set-up, so a cell with no
    warm-up does not measure a 1-2 s import as training."""
    got = _run(f"""
import json, sys
from joulegrid import config as CFG, grid as G, runner
from joulegrid.data import dataset_path, prepare
cfg = {{"grid": {{"workloads": ["baler_ae"], "phases": ["train", "infer"], "devices": ["cpu"], "precisions": ["fp32"],
        "variants": ["baseline"], "batch_sizes": [128], "repeats": 1}},
       "workloads": {{"baler_ae": {{"rows": 640, "epochs": 1}}}},
       "measure": {{"threads": 1, "warmup_batches": 0, "idle_baseline_s": 0, "min_window_s": 0, "hotspots": "always",
                   "meters": ["estimate"], "outlier_retries": 0}}}}
cfg, sites = CFG.prepare(cfg, base_dir=CFG.REPO_ROOT)
from joulegrid import spec as SP
b = SP.SpecBuilder(cfg, sites)
data = {str(tmp_path)!r} + "/" + dataset_path("r", "jets", 640)
prepare("jets", 640, data)
train = b.spec(G.Cell("local", "baler_ae", "train", "cpu", "fp32", "baseline", 128, 0))
# the reference model, trained in another process (training imports torch._dynamo)
import subprocess
code = ("import json,sys; from joulegrid import runner; "
        "runner.train_reference(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], threads=1)")
subprocess.run([sys.executable, "-c", code, json.dumps(train), {str(tmp_path / "ref.pt")!r}, data], check=True)
at_window = []
from joulegrid import phases
open_window = phases.MeasuredWindow.__enter__
def spy(self):
    at_window.append("torch._dynamo" in sys.modules)
    return open_window(self)
phases.MeasuredWindow.__enter__ = spy
infer = b.spec(G.Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 128, 0))
row = runner.run_and_write(infer, {str(tmp_path / "infer.parquet")!r}, data, {str(tmp_path / "ref.pt")!r}, threads=1)
status, after_infer = [row["status"]], "torch._dynamo" in sys.modules
assert row["profile_s"] is not None
row = runner.run_and_write(train, {str(tmp_path / "train.parquet")!r}, data, None, threads=1)
status.append(row["status"])
print(json.dumps({{"status": status, "after_infer": after_infer, "at_window": at_window}}))
""")
    assert got == {"status": ["ok", "ok"], "after_infer": False, "at_window": [False, True]}
