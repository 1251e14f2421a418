#!/usr/bin/env bash
# Run the whole test suite. Starts the local Slurm cluster and HTCondor pool (tests/clusters/)
# when they are not already up and this machine can run them, and stops what it started.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
started=()
cleanup() {
  for c in "${started[@]}"; do tests/clusters/stop-"$c".sh >/dev/null 2>&1 || true; done
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
python -m pytest "$@"
