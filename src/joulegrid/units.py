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
