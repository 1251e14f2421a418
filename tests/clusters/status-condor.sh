#!/usr/bin/env bash
# status-condor.sh - exit 0 only when the HTCondor pool of start-condor.sh is up and usable:
# condor_master (the recorded PID) runs, the collector lists an execute slot and the schedd
# answers condor_q. Otherwise exit 1 and print the reason (tests/clusters/test_*.py skip
# with it). Prints the pool's CONDOR_CONFIG on success.
set -uo pipefail
CONDOR_PREFIX=${CONDOR_PREFIX:-/tmp/htcondor-local}
CONFIG=$CONDOR_PREFIX/pool/condor_config
PIDFILE=$CONDOR_PREFIX/pool/master.pid
BINDIR=$CONDOR_PREFIX/bin
T=${CONDOR_STATUS_TIMEOUT:-10}
fail() { echo "htcondor not usable: $*"; exit 1; }

[ -r "$CONFIG" ] || fail "no pool config $CONFIG (run tests/clusters/start-condor.sh)"
[ -x "$BINDIR/condor_status" ] || fail "no HTCondor tools in $BINDIR (run tests/clusters/start-condor.sh)"
pid=$(cat "$PIDFILE" 2>/dev/null) || fail "no $PIDFILE: the pool is not running"
st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || st=""
{ [ -n "$st" ] && [ "$st" != Z ] && grep -q condor_master "/proc/$pid/cmdline" 2>/dev/null; } \
  || fail "condor_master (pid $pid from $PIDFILE) is not running"
export CONDOR_CONFIG=$CONFIG
slots=$(timeout "$T" "$BINDIR/condor_status" -af Name Cpus Memory GPUs 2>&1) || fail "collector does not answer: $slots"
[ -n "$slots" ] || fail "the collector lists no execute slot yet"
q=$(timeout "$T" "$BINDIR/condor_q" -totals 2>&1) || fail "schedd does not answer condor_q: $(tr '\n' ' ' <<<"$q")"
echo "htcondor up: CONDOR_CONFIG=$CONFIG; slot(s): $(tr '\n' ';' <<<"$slots")"
exit 0
