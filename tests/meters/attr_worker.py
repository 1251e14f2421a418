"""TEST HELPER: one "job" measured by joulegrid's meters (rapl on a fake node) in its own process.

    python attr_worker.py '<json>'

JSON: powercap, proc (roots), env (the job's scheduler environment: its reservation), cpu (pin to
this CPU), node_power (site idle powers), interval (attribution_interval_s), work (see below),
go / stop (files to wait for before opening / closing the measured window; stop: optional).

work: {"burn": S}            burn S CPU-seconds of this process, then close the window
      {"duty": D, "s": S}    for S seconds: busy D of every 0.1 s, every 4th period a short-lived
                             /bin/sh grandchild busy too (reaped: its time moves into ours)
      {"phases": [[busy?, s], ...]}   alternate idle (sleep) and busy stretches

Prints "ready" once the meters are set up, then one JSON line: the row's energy and attribution
columns (MeterSet.finish) and the window's monotonic t0, t1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def busy_for(wall_s: float) -> None:
    t = time.monotonic()
    x = 0
    while time.monotonic() - t < wall_s:
        x += 1


def work(spec: dict) -> None:
    if "burn" in spec:
        t = time.process_time()
        while time.process_time() - t < spec["burn"]:
            pass
    elif "duty" in spec:
        end = time.monotonic() + spec["s"]
        n = 0
        while time.monotonic() < end:
            kid = None
            if n % 4 == 0:
                kid = subprocess.Popen(["/bin/sh", "-c", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done"])
            busy_for(0.1 * spec["duty"])
            time.sleep(0.1 * (1 - spec["duty"]))
            if kid is not None:
                kid.wait()
            n += 1
    elif "phases" in spec:
        for busy, s in spec["phases"]:
            busy_for(s) if busy else time.sleep(s)


def wait_file(p: str) -> None:
    while not Path(p).exists():
        time.sleep(0.002)


def main() -> None:
    a = json.loads(sys.argv[1])
    if a.get("cpu") is not None:
        os.sched_setaffinity(0, {a["cpu"]})
    from joulegrid import meters
    from joulegrid.cell_settings import Measure
    from joulegrid.sites import SiteFacts

    measure = Measure.from_dict(
        {"meters": ["rapl"], "counter_interval_s": 0.05, "attribution_interval_s": a.get("interval", 1.0)}
    )
    site = SiteFacts.from_dict({"name": "fake", "node_power": a.get("node_power")})
    ms = meters.build(measure, site, "cpu", rapl_root=a["powercap"], proc_root=a["proc"], env=a["env"])
    ms.ready()
    ms.start_job()
    print("ready", flush=True)
    wait_file(a["go"])
    ms.start("measured")
    work(a["work"])
    if a.get("stop"):
        wait_file(a["stop"])
    (rapl,) = ms.meters
    ms.stop()
    t0, t1 = rapl.first_read, rapl.last_read  # the window's first and last counter reads (monotonic)
    cols, _ = ms.finish(t1 - t0)
    cols["t0"], cols["t1"] = t0, t1
    print(json.dumps(cols, default=str), flush=True)
    ms.close()


if __name__ == "__main__":
    main()
