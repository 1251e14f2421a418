"""joulegrid.units.scaled_unit: the prefix that puts the largest figure in [1, 1000)."""

from __future__ import annotations

import math

import pytest

from joulegrid.units import scaled_unit


@pytest.mark.parametrize(
    ("values", "unit", "prefixes", "want"),
    [
        ([2e-5], "Wh", "kMG", (1.0, "Wh")),  # below 1 with no smaller prefix allowed: the unit itself
        ([20.0, 3.0], "Wh", "kMG", (1.0, "Wh")),
        ([1500.0, 2.0], "Wh", "kMG", (1e3, "kWh")),
        ([999.9], "Wh", "kMG", (1.0, "Wh")),
        ([1000.0], "Wh", "kMG", (1e3, "kWh")),
        ([-4.2e6], "Wh", "kMG", (1e6, "MWh")),  # magnitude, not sign
        ([4e-3, 1e-4], "J", "mµn", (1e-3, "mJ")),
        ([3.7e-4], "J", "mµn", (1e-6, "µJ")),
        ([2.5], "J", "mµn", (1.0, "J")),
        ([5e4], "J", "mµn", (1.0, "J")),  # no larger prefix allowed
        ([1e-12], "J", "mµn", (1e-9, "nJ")),  # below every prefix: the smallest allowed
        ([None, math.nan, 0.0, math.inf], "J", "mµn", (1.0, "J")),  # nothing to scale by
        ([], "g", "kmµn", (1.0, "g")),
    ],
)
def test_scaled_unit(values, unit, prefixes, want):
    assert scaled_unit(values, unit, prefixes) == want
