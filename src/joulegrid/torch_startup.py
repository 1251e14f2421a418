"""Keep torch from importing ``torch._dynamo`` in a process that never compiles.

torch wraps a few eager-mode functions in ``torch._disable_dynamo`` (torch/_compile.py). On its
first call the wrapper imports ``torch._dynamo`` (1.3–2.3 s on a 2-core CPU, more than half of
``import torch`` itself) to build ``torch._dynamo.disable(fn)``, whose only job is to stop a
*running* ``torch.compile`` from tracing ``fn``, and caches it as ``fn.__dynamo_disable``. Two sets
of such wrappers are deferred: FlopCounterMode's ``__torch_dispatch__`` (FLOP counting, what an
inference cell hits; the runner calls this for inference cells) and ``torch.optim.Optimizer``'s
``zero_grad``/``add_param_group``/``state_dict``/``load_state_dict`` (for an optimizer set up in a
process that never steps it: a training cell imports torch._dynamo up front instead, see below).

While ``torch._dynamo`` has never been imported nothing can be compiling (``torch.compile``
imports it), so that disable is a no-op. :func:`defer_dynamo_import` fills the cache of those
wrappers with :class:`_Deferred`, which calls ``fn`` directly while ``torch._dynamo`` is not
imported and, from the first call after something has imported it, builds torch's own
``torch._dynamo.disable(fn, recursive)`` and puts it in the cache: behaviour under ``torch.compile``
is unchanged. A wrapper that is not torch's ``_disable_dynamo`` (another torch version) is left
alone, so the worst case is the import this module avoids. What it cannot avoid: the first
``Optimizer.step`` imports torch._dynamo unconditionally (torch/optim/optimizer.py, in every torch
training script; the runner therefore imports it in a training cell's set-up, outside the measured
window), and int8 cells import torchao, which imports it too. tests/unit/test_torch_startup.py checks
both sides on the pinned torch; bench/bench_cell_cost.py measures the gain.
"""

from __future__ import annotations

import sys
from typing import Any

ATTR = "__dynamo_disable"  # the cache attribute torch._compile._disable_dynamo reads and writes


class _Deferred:
    """Stand-in for ``torch._dynamo.disable(fn, recursive)`` until torch._dynamo is imported."""

    def __init__(self, fn, recursive: bool) -> None:
        self.fn = fn
        self.recursive = recursive

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        dynamo = sys.modules.get("torch._dynamo")
        disable = getattr(dynamo, "disable", None)  # None too while torch._dynamo is being imported
        if disable is None:
            return self.fn(*args, **kwargs)
        real = disable(self.fn, self.recursive, wrapping=False)
        setattr(self.fn, ATTR, real)
        return real(*args, **kwargs)


def _wrapper_code():
    """The code object of torch's ``_disable_dynamo`` wrapper (``inner``), or None."""
    import torch

    make = getattr(getattr(torch, "_compile", None), "_disable_dynamo", None)
    if make is None:
        return None
    code = getattr(make(lambda: None), "__code__", None)
    if code is None or not {"fn", "recursive"} <= set(code.co_freevars):
        return None
    return code


def _defer(wrapper, code) -> bool:
    if getattr(wrapper, "__code__", None) is not code or wrapper.__closure__ is None:
        return False
    cells = dict(zip(code.co_freevars, wrapper.__closure__, strict=True))
    fn, recursive = cells["fn"].cell_contents, cells["recursive"].cell_contents
    if getattr(fn, ATTR, None) is None:
        setattr(fn, ATTR, _Deferred(fn, recursive))
    return True


def defer_dynamo_import() -> int:
    """Defer torch._dynamo's import in the wrappers a cell calls; returns how many were deferred
    (0 if torch._dynamo is already imported or the wrappers are not torch 2.13's)."""
    if "torch._dynamo" in sys.modules:
        return 0
    code = _wrapper_code()
    if code is None:
        return 0
    import torch.optim
    import torch.utils.flop_counter as flop_counter

    classes = [torch.optim.Optimizer]
    classes += [v for v in vars(flop_counter).values() if isinstance(v, type) and v.__module__ == flop_counter.__name__]
    return sum(_defer(value, code) for cls in classes for value in vars(cls).values())
