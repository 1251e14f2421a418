#!/usr/bin/env bash
# Run the whole test suite. Starts the local Slurm cluster and HTCondor pool (tests/clusters/)
# when they are not already up and this machine can run them, and stops what it started.
#
# Two pytest phases (tests/phases.py, tests/README.md): first the tests that check no measurement, on
# JOULEGRID_TEST_WORKERS pytest-xdist workers (default 4: most of them wait on Snakemake, Slurm or
# HTCondor); then the tests that check measurements, one at a time with nothing else of the suite
# running. Arguments go to both phases (e.g. tests/run-tests.sh tests/workflow -x); each phase's test
# count and wall time are printed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
started=()
report=$(mktemp /tmp/joulegrid-phases.XXXXXX)
cleanup() {
  for c in "${started[@]}"; do tests/clusters/stop-"$c".sh >/dev/null 2>&1 || true; done
  rm -f "$report"
}
trap cleanup EXIT
for c in slurm condor; do
  if [ -x tests/clusters/start-"$c".sh ] && [ "${JOULEGRID_NO_CLUSTERS:-0}" != 1 ]; then
    if tests/clusters/status-"$c".sh >/dev/null 2>&1; then
      echo "run-tests: $c already running" >&2
    elif tests/clusters/start-"$c".sh > /tmp/joulegrid-start-"$c".log 2>&1; then
      started+=("$c"); echo "run-tests: started $c" >&2
    else
      echo "run-tests: could not start $c (tests needing it will skip); see /tmp/joulegrid-start-$c.log" >&2
      tail -5 /tmp/joulegrid-start-"$c".log >&2
    fi
  fi
done

workers=${JOULEGRID_TEST_WORKERS:-4}
rc=0
ran=0
t0=$(date +%s)
for phase in parallel serial; do
  if [ "$phase" = parallel ]; then args=(-n "$workers" --dist loadgroup); else args=(-n 0); fi
  echo "run-tests: phase $phase: python -m pytest --phase $phase ${args[*]} $*" >&2
  p0=$(date +%s)
  JOULEGRID_PHASE_REPORT="$report" python -m pytest --phase "$phase" "${args[@]}" "$@"
  prc=$?
  echo "{\"phase\": \"$phase\", \"process_s\": $(( $(date +%s) - p0 )), \"rc\": $prc}" >> "$report"
  # 5: no test of this phase among the ones asked for
  if [ "$prc" -eq 0 ]; then ran=1; elif [ "$prc" -ne 5 ] && [ "$rc" -eq 0 ]; then rc=$prc; fi
done
total=$(( $(date +%s) - t0 ))

echo
echo "run-tests: the suite's phases (wall: the whole pytest process, start-up and collection included)"
python - "$report" "$total" <<'EOF'
import json, sys
phases = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    phases.setdefault(r["phase"], {}).update(r)
print(f"  {'phase':<9}{'tests':>6}{'passed':>8}{'skipped':>9}{'failed':>8}{'wall':>8}  workers")
for name, r in phases.items():
    if "tests" not in r:  # pytest stopped before its summary
        print(f"  {name:<9}{'?':>6}{'':>8}{'':>9}{'':>8}{r['process_s']:>7}s  (pytest exit {r['rc']})")
        continue
    w = r["workers"] or "1 (alone)"
    print(f"  {name:<9}{r['tests']:>6}{r['passed']:>8}{r['skipped']:>9}{r['failed']:>8}{r['process_s']:>7}s  {w}")
done = [r for r in phases.values() if "tests" in r]
print(f"  {'total':<9}{sum(r['tests'] for r in done):>6}{sum(r['passed'] for r in done):>8}"
      f"{sum(r['skipped'] for r in done):>9}{sum(r['failed'] for r in done):>8}{int(sys.argv[2]):>7}s")
EOF
if [ "$rc" -eq 0 ] && [ "$ran" -eq 0 ]; then rc=5; fi
exit "$rc"
