#!/usr/bin/env bash
# start-condor.sh -- install (once) and start a single-machine HTCondor pool
# ("minicondor": collector + negotiator + schedd + startd on 127.0.0.1) on a
# Debian 12 (bookworm) machine, as root, without systemd, for joulegrid's
# cluster tests (tests/clusters/test_*.py). Stop it with stop-condor.sh, check it
# with status-condor.sh. Based on the tested recipe in ../shared/recipes/htcondor/.
#
# Why it looks like this (all verified on Debian 12, root, no systemd):
#   * Debian 12 has no HTCondor package; the PyPI `htcondor` wheel has no
#     daemons.  Debian 13 (trixie) has `condor` 23.9.6, but it needs
#     glibc >= 2.38 / libstdc++ >= 14, and installing it into bookworm with apt
#     would upgrade ~107 and remove ~19 system packages.  So we download the
#     trixie package closure with a *private* apt config (nothing in /etc/apt
#     or /var/lib/dpkg is touched), unpack it into $CONDOR_PREFIX/sysroot and
#     patchelf every ELF executable to use the sysroot's ld.so + libs.
#   * HTCondor never lets a job be owned by "root" (hard-coded in the schedd)
#     and never runs a job with uid 0.  So the daemons run inside a user
#     namespace (`unshare --user --map-user=<condoruser>`): inside, they are an
#     unprivileged "personal condor" run by $CONDOR_POOL_USER; outside, that
#     uid *is* root.  Root clients (condor_submit, python bindings, snakemake)
#     authenticate with FS auth and are seen as $CONDOR_POOL_USER (CONDOR_IDS
#     = 0.0 makes root clients create the FS-auth dir as uid 0, which maps to
#     the pool user inside).  Jobs therefore run with root's file access and
#     files they write are owned by root outside.
#   * The pool user must NOT be called "condor" (the schedd rejects jobs whose
#     Owner is "condor": "MakeUserRec with illegal identifiers").
#
# Idempotent: re-running skips the download/unpack when the sysroot is
# complete and does not start a second master when one is already running.
#
# Usage:  sudo ./start-condor.sh          (we are root anyway)
#         source <(./start-condor.sh --env)   # just print the env exports
# Env overrides: CONDOR_PREFIX, CONDOR_POOL_USER, CONDOR_PORT,
#                CONDOR_DEB_SUITE (trixie|sid), CONDOR_DEB_MIRROR,
#                CONDOR_START_TIMEOUT,
#                CONDOR_FRESH (default 1: wipe queue/logs when (re)starting),
#                CONDOR_NUM_CPUS, CONDOR_MEMORY_MB (advertise more CPUs/memory
#                than the machine has, so jobs with request_cpus > nproc still
#                match instead of staying idle forever),
#                CONDOR_FAKE_GPUS (default 1): GPUs the execute slot advertises;
#                they do not exist, but let joulegrid's cuda cells (request_gpus)
#                match so the tests see a GPU request go through HTCondor (the job
#                then finds no CUDA device and records a skipped row). 0: none.
#                CONDOR_CERN_LIKE (default 1): a second execute node that behaves like
#                CERN's batch workers, for jobs that ask for a worker OS (MY.WantOS):
#                file transfer on, jobs start in their scratch directory and do not
#                see their submit directory (cern-like-job.sh). 0: none.
set -euo pipefail

CONDOR_PREFIX=${CONDOR_PREFIX:-/tmp/htcondor-local}
CONDOR_POOL_USER=${CONDOR_POOL_USER:-condoruser}
CONDOR_PORT=${CONDOR_PORT:-9618}
CONDOR_DEB_SUITE=${CONDOR_DEB_SUITE:-trixie}
CONDOR_START_TIMEOUT=${CONDOR_START_TIMEOUT:-60}
CONDOR_NUM_CPUS=${CONDOR_NUM_CPUS:-}
CONDOR_MEMORY_MB=${CONDOR_MEMORY_MB:-}
CONDOR_FRESH=${CONDOR_FRESH:-1}   # 1: empty job queue/logs/sandboxes on (re)start
CONDOR_FAKE_GPUS=${CONDOR_FAKE_GPUS:-1}
CONDOR_CERN_LIKE=${CONDOR_CERN_LIKE:-1}
HERE=$(cd "$(dirname "$0")" && pwd)

SYSROOT=$CONDOR_PREFIX/sysroot
POOL=$CONDOR_PREFIX/pool
BINDIR=$CONDOR_PREFIX/bin
APTDIR=$CONDOR_PREFIX/apt
CONFIG=$POOL/condor_config
PIDFILE=$POOL/master.pid

print_env() {
  echo "export CONDOR_CONFIG=$CONFIG"
  echo "export PATH=$BINDIR:\$PATH"
}
if [[ "${1:-}" == "--env" ]]; then print_env; exit 0; fi

log() { printf '[start-condor] %s\n' "$*" >&2; }
alive() {  # running and not a zombie (PID 1 here reaps late)
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}
[[ $(id -u) -eq 0 ]] || { log "must run as root"; exit 1; }

# ---------------------------------------------------------------- 1. host tools
need=()
command -v patchelf >/dev/null || need+=(patchelf)
command -v unshare  >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  # a fresh machine may have empty or stale package lists: update once and retry
  apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${need[@]}" >&2 \
    || { apt-get -o DPkg::Lock::Timeout=900 update -qq >&2 \
         && apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${need[@]}" >&2; }
fi

# ------------------------------------------ 2. HTCondor daemons into a sysroot
if [[ ! -f $SYSROOT/.complete ]]; then
  t0=$(date +%s)
  if [[ -z "${CONDOR_DEB_MIRROR:-}" ]]; then
    # Use the same Debian mirror the host's apt is configured with.
    CONDOR_DEB_MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [[ -n "$CONDOR_DEB_MIRROR" ]] || CONDOR_DEB_MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [[ -n "$CONDOR_DEB_MIRROR" ]] || { log "no Debian mirror found in the host apt sources; set CONDOR_DEB_MIRROR"; exit 1; }
  fi
  log "fetching condor from Debian $CONDOR_DEB_SUITE ($CONDOR_DEB_MIRROR) into $SYSROOT"
  rm -rf "$SYSROOT" "$APTDIR"
  mkdir -p "$APTDIR"/{lists/partial,cache/archives/partial,etc/empty.d} "$SYSROOT"
  : > "$APTDIR/status"                       # empty dpkg status => full closure
  echo "deb $CONDOR_DEB_MIRROR $CONDOR_DEB_SUITE main" > "$APTDIR/etc/sources.list"
  APT=(apt-get
       -o Dir::Etc::sourcelist="$APTDIR/etc/sources.list"
       -o Dir::Etc::sourceparts="$APTDIR/etc/empty.d"
       -o Dir::Etc::preferences="$APTDIR/etc/preferences"
       -o Dir::Etc::preferencesparts="$APTDIR/etc/empty.d"
       -o Dir::State::Lists="$APTDIR/lists"
       -o Dir::State::status="$APTDIR/status"
       -o Dir::Cache="$APTDIR/cache"
       -o APT::Install-Recommends=false
       -o Debug::NoLocking=1)
  "${APT[@]}" update -qq >&2
  "${APT[@]}" install -y -qq --download-only condor >&2
  log "downloaded $(ls "$APTDIR"/cache/archives/*.deb | wc -l) .debs ($(du -sh "$APTDIR"/cache/archives | cut -f1)) after $(( $(date +%s) - t0 )) s"
  for deb in "$APTDIR"/cache/archives/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
  log "unpacked after $(( $(date +%s) - t0 )) s"
  ldso=$SYSROOT/usr/lib64/ld-linux-x86-64.so.2
  [[ -e $ldso ]] || { log "no $ldso in sysroot"; exit 1; }
  rpath=$SYSROOT/usr/lib/x86_64-linux-gnu:$SYSROOT/usr/lib
  n=0
  for f in "$SYSROOT"/usr/sbin/* "$SYSROOT"/usr/bin/* "$SYSROOT"/usr/libexec/condor/*; do
    [[ -f $f && ! -L $f ]] || continue
    [[ $(head -c4 "$f" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || continue   # ELF?
    patchelf --print-interpreter "$f" >/dev/null 2>&1 || continue               # executables only
    patchelf --set-interpreter "$ldso" --force-rpath --set-rpath "$rpath" "$f"
    n=$((n+1))
  done
  log "patched $n ELF executables"
  "$SYSROOT/usr/sbin/condor_master" -version >&2
  rm -rf "$APTDIR/cache/archives"            # keep the sysroot, drop the .debs
  touch "$SYSROOT/.complete"
  log "sysroot ready in $(( $(date +%s) - t0 )) s"
fi

# Host-side tool dir: only condor_* (do NOT put $SYSROOT/usr/bin on PATH, it
# also holds trixie's python3/perl/openssl).
mkdir -p "$BINDIR"
for f in "$SYSROOT"/usr/bin/condor_* "$SYSROOT"/usr/sbin/condor_*; do
  ln -sfn "$f" "$BINDIR/$(basename "$f")"
done

# ------------------------------------------------------------ 3. pool account
if ! getent passwd "$CONDOR_POOL_USER" >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
          --shell /usr/sbin/nologin "$CONDOR_POOL_USER"
fi
PUID=$(id -u "$CONDOR_POOL_USER"); PGID=$(id -g "$CONDOR_POOL_USER")

# ------------------------------------------------------------------ 4. config
mkdir -p "$POOL"/{log,spool,execute,lock,run,cred_dir,config.d}
cat > "$CONFIG.new" <<EOF
# generated by start-condor.sh -- single-machine pool on 127.0.0.1:$CONDOR_PORT
RELEASE_DIR = $SYSROOT/usr
LOCAL_DIR   = $POOL
BIN     = \$(RELEASE_DIR)/bin
SBIN    = \$(RELEASE_DIR)/sbin
LIB     = \$(RELEASE_DIR)/lib/condor
LIBEXEC = \$(RELEASE_DIR)/libexec/condor
SHARE   = \$(RELEASE_DIR)/share/condor
LOG     = \$(LOCAL_DIR)/log
SPOOL   = \$(LOCAL_DIR)/spool
EXECUTE = \$(LOCAL_DIR)/execute
LOCK    = \$(LOCAL_DIR)/lock
RUN     = \$(LOCAL_DIR)/run
CRED_STORE_DIR = \$(LOCAL_DIR)/cred_dir
ETC     = \$(LOCAL_DIR)
LOCAL_CONFIG_FILE =
LOCAL_CONFIG_DIR = \$(LOCAL_DIR)/config.d

use ROLE: CentralManager
use ROLE: Submit
use ROLE: Execute

NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = 127.0.0.1:$CONDOR_PORT

# --- identity / security (see header) ---
# Root clients do FS auth as uid 0 (not as a 'condor' account); inside the
# daemons' user namespace uid 0 *is* $CONDOR_POOL_USER.
CONDOR_IDS = 0.0
SEC_DEFAULT_AUTHENTICATION = REQUIRED
SEC_DEFAULT_INTEGRITY = REQUIRED
SEC_DEFAULT_AUTHENTICATION_METHODS = FS
SEC_CLIENT_AUTHENTICATION_METHODS = FS
SEC_READ_AUTHENTICATION = OPTIONAL
SEC_READ_INTEGRITY = OPTIONAL
ALLOW_DAEMON = $CONDOR_POOL_USER@\$(UID_DOMAIN)
ALLOW_NEGOTIATOR = $CONDOR_POOL_USER@\$(UID_DOMAIN)
ALLOW_ADMINISTRATOR = $CONDOR_POOL_USER@\$(UID_DOMAIN)
ALLOW_WRITE = *
ALLOW_READ = *
MAIL = /bin/true
# Clients >= 24.x (e.g. the PyPI htcondor 24.12 bindings) insist that the FS
# auth directory name carries the server's ip:port ("channel binding"); the
# 23.9 daemons from trixie do not send that => "Directory name doesn't match
# server's network address".  Client-side switch (read by tools & bindings):
SEC_FS_ENFORCE_CHANNEL_BINDING = False

# --- fast turnaround for tests (defaults are tuned for big pools) ---
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 2
SCHEDD_MIN_INTERVAL = 0
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
STARTER_INITIAL_UPDATE_INTERVAL = 1
SHADOW_QUEUE_UPDATE_INTERVAL = 2
RUNBENCHMARKS = 0
EOF
[[ -n "$CONDOR_NUM_CPUS" ]]  && echo "NUM_CPUS = $CONDOR_NUM_CPUS" >> "$CONFIG.new"
[[ -n "$CONDOR_MEMORY_MB" ]] && echo "MEMORY = $CONDOR_MEMORY_MB" >> "$CONFIG.new"
if (( CONDOR_FAKE_GPUS > 0 )); then
  # GPUs that do not exist (ids only), so request_gpus jobs can match in tests
  echo "MACHINE_RESOURCE_GPUs = $(seq -s, -f 'fake-gpu-%g' 0 $((CONDOR_FAKE_GPUS - 1)))" >> "$CONFIG.new"
fi
if [[ $CONDOR_CERN_LIKE == 1 ]] \
   && ! unshare --user --map-user="$PUID" --map-group="$PGID" -- unshare --user --map-root-user --mount true 2>/dev/null; then
  # cern-like-job.sh hides the submit directory in a user namespace nested in the pool's
  log "no CERN-like execute node: this machine does not allow nested user namespaces (unshare failed)"
  CONDOR_CERN_LIKE=0
fi
if [[ $CONDOR_CERN_LIKE == 1 ]]; then
  mkdir -p "$POOL/execute-cern"
  install -m 755 "$HERE/cern-like-job.sh" "$POOL/cern-like-job.sh"   # the pool keeps its own copy
  # The starters of the second startd read its settings (CERN.*) too: a startd does not pass its
  # local name on to the starters it runs (-classad is the startd asking what the starter can do).
  cat > "$POOL/cern-starter.sh" <<EOF
#!/bin/sh
case \${1:-} in -classad) exec $SYSROOT/usr/sbin/condor_starter "\$@" ;; esac
exec $SYSROOT/usr/sbin/condor_starter -local-name CERN "\$@"
EOF
  chmod 755 "$POOL/cern-starter.sh"
  cat >> "$CONFIG.new" <<EOF

# --- a second, CERN-like execute node (docs/sites.md, "Test clusters") ---
# A second startd behaves like CERN's batch workers (and Blackett's): another FILESYSTEM_DOMAIN
# than the submit side (file transfer on, the job starts in its scratch directory) and a job
# wrapper that hides the job's submit directory from it (no shared working directory:
# cern-like-job.sh). It runs the jobs that ask for a worker OS the way CERN's pool wants it
# (MY.WantOS: profiles/lxplus) and those that bring their outputs back by file transfer
# (TransferOutput: shared-fs-usage none, profiles/blackett). Every other job runs on the first
# startd as before, with the shared filesystem.
NO_SHARED_FS_JOB = (TARGET.WantOS =!= undefined || TARGET.TransferOutput =!= undefined)
STARTD_CERN = \$(STARTD)
STARTD_CERN_ARGS = -f -local-name CERN
DAEMON_LIST = \$(DAEMON_LIST) STARTD_CERN
START = !\$(NO_SHARED_FS_JOB)
CERN.STARTD_NAME = cern
CERN.STARTD_LOG = \$(LOG)/StartLog.cern
CERN.STARTER_LOG = \$(LOG)/StarterLog.cern
CERN.STARTD_ADDRESS_FILE = \$(LOG)/.startd_cern_address
CERN.EXECUTE = \$(LOCAL_DIR)/execute-cern
CERN.FILESYSTEM_DOMAIN = cern-like.invalid
CERN.START = \$(NO_SHARED_FS_JOB)
CERN.STARTER = $POOL/cern-starter.sh
CERN.USER_JOB_WRAPPER = $POOL/cern-like-job.sh
# No Kerberos here: jobs that ask for their Kerberos/AFS credentials (SendCredential, as
# profiles/lxplus must at CERN) run without them instead of failing in the starter.
JOB_TRANSFORM_NAMES = \$(JOB_TRANSFORM_NAMES) NoKerberos
JOB_TRANSFORM_NoKerberos @=end
   REQUIREMENTS SendCredential =?= true
   DELETE SendCredential
@end
EOF
fi
config_changed=0
cmp -s "$CONFIG.new" "$CONFIG" || config_changed=1
mv -f "$CONFIG.new" "$CONFIG"

# ------------------------------------------------------------------- 5. start
export CONDOR_CONFIG=$CONFIG
if [[ -f $PIDFILE ]] && pid=$(cat "$PIDFILE") && alive "$pid" \
   && grep -q condor_master "/proc/$pid/cmdline" 2>/dev/null; then
  log "condor_master already running (pid $pid)"
  if (( config_changed )); then
    log "config changed: condor_reconfig"; "$BINDIR/condor_reconfig" >&2 || true
  fi
else
  t0=$(date +%s.%N)
  # stale state from a previous (killed) run would confuse the new master
  rm -rf "$POOL"/lock/* "$POOL"/run/* "$POOL"/log/.*_address 2>/dev/null || true
  if [[ $CONDOR_FRESH == 1 ]]; then   # test pool: start with an empty queue
    rm -rf "$POOL"/spool/* "$POOL"/spool/.[!.]* "$POOL"/execute/* "$POOL"/log/* 2>/dev/null || true
  fi
  setsid unshare --user --map-user="$PUID" --map-group="$PGID" -- \
      "$SYSROOT/usr/sbin/condor_master" -f \
      > "$POOL/master.stdout" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  pid=$(cat "$PIDFILE")
  log "started condor_master pid $pid"
  deadline=$(( $(date +%s) + CONDOR_START_TIMEOUT ))
  until "$BINDIR/condor_status" -af Name 2>/dev/null | grep -q . \
        && "$BINDIR/condor_q" -totals >/dev/null 2>&1; do
    if ! alive "$pid"; then
      log "condor_master died:"; cat "$POOL/master.stdout" >&2
      tail -n 20 "$POOL/log/MasterLog" >&2 || true; exit 1
    fi
    if (( $(date +%s) > deadline )); then
      log "pool not ready after ${CONDOR_START_TIMEOUT}s"; tail -n 20 "$POOL/log/MasterLog" >&2 || true; exit 1
    fi
    sleep 0.2
  done
  log "pool ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
fi
print_env
