"""Third-party noise, silenced at its source; what a user must act on is kept.

A user of joulegrid should read only warnings that are theirs. These libraries print messages on
hosts where there is nothing to act on:

* **htcondor2** (the HTCondor executor plugin's bindings, imported by every ``snakemake`` start
  when its plugins are collected) warns "CONDOR_CONFIG is unset ..." on every host without an
  HTCondor pool, then uses /dev/null itself. Snakemake imports it before any joulegrid code runs,
  so the filter is installed at interpreter start by a ``.pth`` file in the environment
  (``python -m joulegrid.quiet --install``; ``make setup`` runs it). It only hides the message:
  htcondor2 still sets CONDOR_CONFIG=/dev/null as before, and a run that submits to HTCondor
  without a configuration is told so by joulegrid (``condor_config_problem``, workflow onstart).
* **amdsmi** (a dependency of zeus, imported by codecarbon and zeus) prints "libamd_smi.so: cannot
  open shared object file" and makes codecarbon warn "AMD GPU detected but amdsmi is not properly
  configured" on hosts with no AMD GPU at all. Where the host has no AMD GPU driver
  (no /dev/kfd, ROCm's kernel interface), amdsmi is marked absent before they import it, which is
  the truth for them (no AMD GPU to read); on a host with /dev/kfd nothing is changed, so a broken
  ROCm set-up is still reported.
* **codecarbon** logs at INFO by default ("offline tracker init", "Multiple instances of
  codecarbon are allowed", the forced carbon intensity): its level comes from
  CODECARBON_LOG_LEVEL, set to error unless the user set it; joulegrid records what codecarbon
  measured (and how) in every row.
* **torchao** logs "Failed to load .../_C_mxfp8...so" and ".../_C_cutlass_90a.abi3.so" at import:
  CUDA kernels that cannot load on a torch without CUDA, or built for another Python (the
  cpython-310 file on Python 3.11); joulegrid's int8 path is the CPU one. Hidden in exactly those
  cases, as is its "Detected no triton" (triton is a GPU compiler).
* **torch** warns (torch.utils._pytree) that torchao's ``register_constant`` of an Enum is
  deprecated: a note to torchao's developers about torchao's code.
* **kineto** (torch.profiler's C++ back end, the hotspots pass of repeat 0) prints
  "USDT:... profiler_start" / "profiler_stop" trace markers in every profiled cell. They are its
  highest log level (above ERROR), so only KINETO_LOG_LEVEL=6 hides them, and with them kineto's
  own errors: a profiling pass that fails still shows in the cell's log (runner: "hotspot
  profiling failed: <error>", no hotspot rows). Set unless the user set it.

``install()`` applies the last five; ``joulegrid`` commands call it first (cli.main). Tested by
tests/workflow/test_quiet_logs.py on a real run: its logs hold no third-party warning.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import sysconfig
from pathlib import Path

CONDOR_MESSAGE = "The environment variable CONDOR_CONFIG is unset"
PTH_NAME = "joulegrid-quiet.pth"
# A .pth file's lines starting with "import" run at interpreter start (site module): one line.
PTH_TEXT = (
    "# joulegrid: hide htcondor2's import-time warning 'CONDOR_CONFIG is unset' on hosts without an HTCondor pool\n"
    "# (snakemake imports it at every start, before joulegrid code runs); see src/joulegrid/quiet.py\n"
    "import warnings; warnings.filterwarnings('ignore', message='" + CONDOR_MESSAGE + "', category=UserWarning)\n"
)


def pth_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def install_pth() -> Path:
    """Write the .pth file into this environment's site-packages (idempotent)."""
    p = pth_path()
    if not p.is_file() or p.read_text() != PTH_TEXT:
        p.write_text(PTH_TEXT)
    return p


def condor_config_problem(executor: str | None) -> str | None:
    """A run submitting to HTCondor on a host where htcondor2 found no configuration (it then set
    CONDOR_CONFIG=/dev/null itself; the import-time warning saying so is hidden)."""
    if executor == "htcondor" and os.environ.get("CONDOR_CONFIG") == "/dev/null":
        return (
            "joulegrid: this run submits to HTCondor, but this host has no HTCondor configuration (CONDOR_CONFIG "
            "unset, no condor_config in ~/.condor, /etc/condor, /usr/local/etc). Fix: run on a submit host "
            "of the pool or export CONDOR_CONFIG=<its condor_config>"
        )
    return None


def _no_amd_gpu() -> bool:
    return not os.path.exists("/dev/kfd") and not os.environ.get("ROCM_PATH") and not os.environ.get("ROCM_HOME")


class _Drop(logging.Filter):
    """Drops the records of one logger that match a test (the reason is where it is installed)."""

    def __init__(self, test):
        super().__init__()
        self.test = test

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self.test(record.getMessage())
        except Exception:  # noqa: BLE001 - a filter must never break logging
            return True


def _torch_has_cuda() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and getattr(torch.version, "cuda", None))


def _torchao_unloadable(msg: str) -> bool:
    """torchao's "Failed to load <file>: ..." for a library that cannot load here by construction."""
    m = re.match(r"Failed to load (\S+?):", msg)
    if not m or "/torchao/_C" not in m.group(1).replace("\\", "/"):
        return False
    name = Path(m.group(1)).name
    tag = re.search(r"\.cpython-(\d+)-", name)
    other_python = tag is not None and tag.group(1) != f"{sys.version_info.major}{sys.version_info.minor}"
    return other_python or not _torch_has_cuda()


_installed = False


def install() -> None:
    """Silence the noise of codecarbon, amdsmi, torchao and torch (see the module doc). Idempotent,
    cheap (no third-party import): call it before anything imports them."""
    global _installed
    if _installed:
        return
    _installed = True
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # read when torch.profiler starts (see the module doc)
    if _no_amd_gpu() and "amdsmi" not in sys.modules:
        sys.modules["amdsmi"] = None  # import amdsmi -> ImportError: "not installed", as there is no AMD GPU
    logging.getLogger("torchao").addFilter(_Drop(_torchao_unloadable))
    logging.getLogger("torchao.kernel.intmm").addFilter(
        _Drop(lambda m: "Detected no triton" in m and not _torch_has_cuda())
    )
    logging.getLogger("torch.utils._pytree").addFilter(
        _Drop(lambda m: "is an Enum subclass" in m and "register_constant() on Enum subclasses is deprecated" in m)
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m joulegrid.quiet", description="install the start-up filter (.pth) of joulegrid.quiet"
    )
    ap.add_argument("--install", action="store_true", help=f"write {PTH_NAME} into this environment's site-packages")
    args = ap.parse_args(argv)
    if args.install:
        print(f"joulegrid: {install_pth()}")
    else:
        print(pth_path() if pth_path().is_file() else f"{pth_path()} (not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
