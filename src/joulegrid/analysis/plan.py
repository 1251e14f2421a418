"""`joulegrid plan`: what a config would run, before any energy is spent."""

from __future__ import annotations

import sys
from collections import Counter

import yaml

from .. import config as CFG
from .. import grid as G


def _overrides(items: list[str]) -> dict:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise CFG.ConfigError(f"--config {it!r}: expected KEY=VALUE")
        out[k] = yaml.safe_load(v)
    return out


def plan(args) -> int:
    config, _sites = CFG.load(args.configfile, _overrides(args.config))
    g = G.expand(config)
    out = sys.stdout
    print(f"site {config['site']}: {len(g.cells)} cell(s) to measure, {len(g.excluded)} excluded", file=out)
    for axis, counts in g.counts().items():
        vals = ", ".join(f"{k} ({v})" for k, v in counts.items())
        print(f"  {axis:<11} {vals}", file=out)
    if g.excluded:
        reasons = Counter(e.reason for e in g.excluded)
        print("exclusions:", file=out)
        for reason, n in reasons.most_common():
            print(f"  {n:>5} x {reason}", file=out)
        if args.exclusions:
            for e in g.excluded:
                print(f"  - {e.cell.id}: {e.reason}", file=out)
    return 0
