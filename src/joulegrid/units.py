"""Units and the one formula that turns energy into CO2: the only home of both.

Energies are joules everywhere in joulegrid (``_j`` columns); carbon intensity is gCO2e per kWh as the
grid operator (or ``config/sites.yaml``) gives it, and PUE a plain factor. The functions work on plain
numbers and, unchanged, on polars expressions (the analysis' columns): the runner's ``co2_kg`` and the
report's SCI, fleet and site comparison compute CO2 with the same arithmetic.

Pure Python: no torch, no polars import.
"""

from __future__ import annotations

from typing import TypeVar

J_PER_KWH = 3.6e6  # joules in one kilowatt-hour

T = TypeVar("T")  # a float, or a polars expression


def kwh(energy_j: T) -> T:
    """Joules as kilowatt-hours."""
    return energy_j / J_PER_KWH


def co2_g(energy_j: T, intensity_g_per_kwh, pue=1.0) -> T:
    """Grams of CO2e for ``energy_j`` joules drawn by the IT equipment: kWh x PUE (the facility's
    overhead) x the grid's carbon intensity (gCO2e/kWh)."""
    return kwh(energy_j) * pue * intensity_g_per_kwh


# SI prefixes a figure may be shown with, largest first: (factor, prefix)
_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


def scaled_unit(values, unit: str, prefixes: str = "kM") -> tuple[float, str]:
    """The unit to show ``values`` (in ``unit``) in: (divisor, unit with its SI prefix). The prefix puts the
    largest magnitude among the values in [1, 1000) where ``prefixes`` (plus none) allow it: 2e-5 MWh is
    shown as 20 Wh (scaled_unit([20.0], "Wh")), 0.004 J as 4 mJ (scaled_unit([4e-3], "J", "mµ")).
    Values that are missing, zero or not finite are ignored; none left: the unit itself."""
    mags = [abs(float(v)) for v in values if v is not None and v == v and v not in (float("inf"), float("-inf"))]
    top = max((m for m in mags if m > 0), default=None)
    allowed = [(f, p) for f, p in _PREFIXES if p == "" or p in prefixes]
    if top is None:
        return 1.0, unit
    for f, p in allowed:  # largest first: the first prefix the value reaches
        if top >= f * (1 - 1e-12):
            return f, p + unit
    f, p = allowed[-1]
    return f, p + unit
