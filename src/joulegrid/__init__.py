"""joulegrid: what machine-learning scientific software costs (time, memory, FLOPs, energy, CO2)."""

__version__ = "0.1.0"
