"""A workload package of a 'user', defined only under tests/ (bring-your-own workload tests)."""
