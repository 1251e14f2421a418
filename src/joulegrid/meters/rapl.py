"""RAPL energy counters read directly from Linux powercap (``/sys/class/powercap``).

Domains used:
- every CPU package zone ``intel-rapl:<N>`` whose name starts with ``package`` -> component
  ``cpu`` (summed over sockets);
- every ``dram`` zone (usually the sub-zone ``intel-rapl:<N>:<M>`` named ``dram``) -> ``dram``.
Not used: ``core``/``uncore`` sub-zones (already inside the package), ``psys`` (the whole SoC
platform, overlaps everything) and the ``intel-rapl-mmio`` interface (a second view of the same
package counter: reading both would count the package twice). AMD Zen CPUs expose their package
counter through the same ``intel-rapl`` control type (no DRAM domain).

``energy_uj`` counts microjoules and wraps to 0 at ``max_energy_range_uj``; the poll thread of
``CounterMeter`` sees every wrap (see counter.py). Since Linux 5.10 (the PLATYPUS mitigation)
``energy_uj`` is readable by root only on most distributions: the meter is then unavailable, and
the reason says how to fix it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .base import MeterUnavailable
from .counter import CounterMeter

POWERCAP = "/sys/class/powercap"
_ZONE = re.compile(r"^intel-rapl:\d+(:\d+)?$")


@dataclass(frozen=True)
class Domain:
    key: str  # 'cpu:<zone>' or 'dram:<zone>'
    path: Path  # the zone folder
    range_uj: int


def _read_text(p: Path) -> str:
    return p.read_text().strip()


def discover(root: str | os.PathLike = POWERCAP) -> list[Domain]:
    """Package and DRAM domains under `root` (no readability check). Empty if there is no RAPL."""
    base = Path(root)
    if not base.is_dir():
        return []
    out: list[Domain] = []
    for z in sorted(base.iterdir()):
        if not _ZONE.match(z.name):
            continue
        try:
            name = _read_text(z / "name")
        except OSError:
            continue
        top = z.name.count(":") == 1
        if name == "dram":
            comp = "dram"
        elif top and name.startswith("package"):
            comp = "cpu"
        else:
            continue
        try:
            rng = int(_read_text(z / "max_energy_range_uj"))
        except (OSError, ValueError):
            rng = 0
        out.append(Domain(f"{comp}:{z.name}", z, rng))
    return out


def readable(root: str | os.PathLike = POWERCAP) -> tuple[list[Domain], str | None]:
    """(domains, None) if RAPL is present and readable, else ([], reason)."""
    doms = discover(root)
    if not doms:
        return (
            [],
            f"no RAPL package domain under {root} (not an Intel/AMD x86 host, a VM or container without powercap)",
        )
    for d in doms:
        try:
            int(_read_text(d.path / "energy_uj"))
        except PermissionError:
            return [], (
                f"{d.path / 'energy_uj'} is readable by root only (Linux >= 5.10 PLATYPUS mitigation). "
                "Fix: run as root, ask the admins for read access (e.g. a udev rule chmod a+r energy_uj), "
                "or use meter zeus with the zeusd daemon"
            )
        except (OSError, ValueError) as e:
            return [], f"cannot read {d.path / 'energy_uj'}: {e}"
    return doms, None


class RaplMeter(CounterMeter):
    name = "rapl"
    methods = {"cpu": "rapl", "dram": "rapl"}

    def __init__(self, interval_s: float = 0.1, root: str | os.PathLike = POWERCAP):
        super().__init__(interval_s)
        doms, why = readable(root)
        if why:
            raise MeterUnavailable(why)
        self.root = root
        self.domains = doms
        self._files = {d.key: d.path / "energy_uj" for d in doms}
        self._ranges = {d.key: d.range_uj / 1e6 for d in doms}

    def _read(self) -> dict[str, float]:
        return {k: int(p.read_bytes()) / 1e6 for k, p in self._files.items()}

    def _range_j(self, key: str) -> float | None:
        return self._ranges.get(key) or None

    def components(self) -> tuple[str, ...]:
        return tuple(sorted({d.key.split(":", 1)[0] for d in self.domains}))

    def clone(self) -> RaplMeter:
        return RaplMeter(self.interval_s, self.root)
