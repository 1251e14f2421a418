"""Energy meters behind one interface, and how their readings become the job's result columns.

The package's front: it only re-exports. Its modules, in the order a cell uses them:

- ``base``: the interface (``Meter``, ``Reading``: every reading says how it was obtained and whose
  energy it is) and its errors;
- ``factory``: the meters that exist (``FACTORIES``, ``KNOWN``) and ``build(measure, site, device)``,
  which makes those a cell asked for (``measure.meters``; ``auto`` = every meter that works on this
  host), records why the others are absent, and a ``tracker.JobUsage`` tracker (node and job CPU time,
  the job's reservation and memory; docs/measurement.md, "Whose energy");
- ``meterset``: ``MeterSet`` prepares the meters in the background, follows the whole job
  (``start_job`` ... ``finish``) and runs the meters over windows (the idle baseline, the measured
  phase) with the usage read back to back at their edges;
- ``account``: at the end, the windows into the row's energy columns: the node/device readings split
  into the job's share (``attribution``), the whole job, the laps;
- ``choice``: one reading per component family (``choose``, ``PRIORITY``), the meters' agreement and
  the energy columns (``summarise``);
- ``confidence``: how far each chosen reading can be off from its meter's update interval and resolution
  against the window (``energy_rel_err``) and the low-confidence flag.

Pure Python: no torch import here (meters import their libraries lazily).
"""

from .base import Meter, MeterUnavailable, NotApplicable, Reading, RequiredMeterMissing
from .choice import (
    DISAGREE_ABOVE,
    FAMILY,
    PRIORITY,
    choose,
    compare,
    job_readings,
    node_of,
    summarise,
)
from .factory import FACTORIES, KNOWN, ROOT_ENV, BuildContext, build
from .meterset import MeterSet, Window, check_required

__all__ = [
    "KNOWN",
    "FACTORIES",
    "PRIORITY",
    "ROOT_ENV",
    "DISAGREE_ABOVE",
    "FAMILY",
    "BuildContext",
    "Meter",
    "MeterUnavailable",
    "RequiredMeterMissing",
    "Reading",
    "MeterSet",
    "NotApplicable",
    "Window",
    "build",
    "check_required",
    "summarise",
    "compare",
    "choose",
    "job_readings",
    "node_of",
]
