#!/usr/bin/env bash
# status-slurm.sh - exit 0 only when the local Slurm cluster is up and usable: munge
# authenticates, slurmctld answers, the node accepts jobs and, when slurm.conf uses slurmdbd,
# accounting answers too (snakemake-executor-plugin-slurm polls job states with sacct).
# Otherwise exit 1 and print the reason (tests/clusters/test_*.py skip with it).
# Works for any Slurm on this host, also one not started by start-slurm.sh.
set -uo pipefail
SLURM_BASE=${SLURM_BASE:-/tmp/slurm-local}
T=${SLURM_STATUS_TIMEOUT:-10}
fail() { echo "slurm not usable: $*"; exit 1; }

for c in sbatch scontrol sinfo munge unmunge; do
  command -v "$c" >/dev/null || fail "$c not installed (tests/clusters/start-slurm.sh installs Debian's slurm-wlm and munge)"
done
[ -r /etc/slurm/slurm.conf ] || fail "no /etc/slurm/slurm.conf (run tests/clusters/start-slurm.sh)"
timeout "$T" bash -c 'munge -n | unmunge' >/dev/null 2>&1 || fail "munged does not answer (no credential round trip)"
ping=$(timeout "$T" scontrol ping 2>&1) || true
grep -q "UP" <<<"$ping" || fail "slurmctld does not answer: $(tr '\n' ' ' <<<"$ping")"
states=$(timeout "$T" sinfo -h -o '%T' 2>/dev/null | sort -u | tr '\n' ' ')
grep -qE '(^| )(idle|mixed|allocated|completing)( |$)' <<<"$states" \
  || fail "no node accepts jobs (node states: ${states:-none}; see $SLURM_BASE/log/slurmd.log)"
if grep -q '^AccountingStorageType=accounting_storage/slurmdbd' /etc/slurm/slurm.conf; then
  timeout "$T" sacct -n -X -S now-1minutes >/dev/null 2>&1 || fail "slurmdbd configured but sacct fails"
fi
echo "slurm up: $(sinfo -h -o '%P %N %T %c CPUs %m MB %G' | head -1)"
exit 0
