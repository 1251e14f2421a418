#!/usr/bin/env bash
# start-slurm.sh - install, configure and start a single-node Slurm cluster on
# localhost, by hand (no systemd, no cgroups), for joulegrid's cluster tests
# (tests/clusters/test_*.py). Idempotent: re-running it while the daemons are up
# only re-checks them. Stop it with stop-slurm.sh, check it with status-slurm.sh.
# Based on the tested recipe in ../shared/recipes/slurm/.
#
# Tested on Debian 12 (bookworm), as root, in a container without systemd:
#   slurm-wlm 22.05.8-4+deb12u3, munge 0.5.15-2+deb12u1,
#   mariadb-server 1:10.11.19-0+deb12u1 (only with SLURM_ACCOUNTING=1).
#
# Environment knobs (all optional):
#   SLURM_BASE=/tmp/slurm-local   state, spool, logs, pid files, MariaDB datadir
#                                 (must be traversable by user mysql, e.g. under /tmp)
#   SLURM_ACCOUNTING=1            1: slurmdbd + local MariaDB, so `sacct` works
#                                    (what snakemake-executor-plugin-slurm uses by default)
#                                 0: no accounting; `sacct` fails, so Snakemake must use
#                                    --slurm-status-command squeue
#   SLURM_CLEAN=0                 1: wipe SLURM_BASE (job state, accounting DB) before start
#   SLURM_NODE_CPUS=<detected>    CPUs advertised by the node; a value above the real
#                                 count oversubscribes (SlurmdParameters=config_overrides)
#   SLURM_NODE_MEM_MB=<detected - 512>  RealMemory of the node, in MiB
#   SLURM_PARTITION=debug         name of the (default) partition
#   SLURM_CLUSTER_NAME=localcluster
#   SLURM_SKIP_INSTALL=0          1: do not call apt-get (packages must be present)
#   SLURM_FAKE_GPUS=1             GPUs the node advertises (gres gpu, no device files): they do
#                                 not exist, but let joulegrid's cuda cells be scheduled with
#                                 --gpus so the tests see a GPU request go through Slurm (the
#                                 job then finds no CUDA device and records a skipped row).
#                                 0: no GPUs (a cuda cell's sbatch is then refused).
#   SLURMCTLD_PORT=6817 SLURMD_PORT=6818 SLURMDBD_PORT=6819
#
# Writes /etc/slurm/slurm.conf (and /etc/slurm/slurmdbd.conf), the default
# locations, so sbatch/squeue/sacct and Snakemake need no SLURM_CONF variable.
# PIDs of everything it started are in $SLURM_BASE/pids/*.pid; stop-slurm.sh
# stops exactly those.
set -euo pipefail

SLURM_BASE=${SLURM_BASE:-/tmp/slurm-local}
SLURM_ACCOUNTING=${SLURM_ACCOUNTING:-1}
SLURM_CLEAN=${SLURM_CLEAN:-0}
SLURM_PARTITION=${SLURM_PARTITION:-debug}
SLURM_CLUSTER_NAME=${SLURM_CLUSTER_NAME:-localcluster}
SLURM_SKIP_INSTALL=${SLURM_SKIP_INSTALL:-0}
SLURM_FAKE_GPUS=${SLURM_FAKE_GPUS:-1}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
SLURMDBD_PORT=${SLURMDBD_PORT:-6819}
MYSQL_SOCKET=$SLURM_BASE/mysqlrun/mysqld.sock

log() { printf '[start-slurm %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }  # no bc on minimal images
T_START=$(now)

[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- install
pkgs=(munge slurmctld slurmd slurm-client)
[ "$SLURM_ACCOUNTING" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$SLURM_SKIP_INSTALL" = 1 ] && die "missing packages: ${missing[*]}"
  log "installing: ${missing[*]}"
  # Keep the packages' maintainer scripts from starting daemons (no systemd
  # here; we start them ourselves below). Only add a policy-rc.d if none exists.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  t=$(now)
  # a fresh machine has empty or stale package lists
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
    --no-install-recommends "${missing[@]}" >"/tmp/start-slurm-apt.$$.log" 2>&1 \
    || { cat "/tmp/start-slurm-apt.$$.log"; [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  rm -f "/tmp/start-slurm-apt.$$.log"
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "install took $(since "$t") s"
fi
log "slurm $(dpkg-query -W -f='${Version}' slurmctld), munge $(dpkg-query -W -f='${Version}' munge)"

# ---------------------------------------------------------------- layout
PIDS=$SLURM_BASE/pids
alive() {  # alive NAME -> true if the pid in $PIDS/NAME.pid is a live (non-zombie) NAME
  local f=$PIDS/$1.pid pid st
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
if [ "$SLURM_CLEAN" = 1 ]; then
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    alive $d && die "$d is running (pid $(cat $PIDS/$d.pid)); run stop-slurm.sh before SLURM_CLEAN=1"
  done
  rm -rf "$SLURM_BASE"
fi
mkdir -p "$SLURM_BASE"/{state,spool,log,pids}
chmod 755 "$SLURM_BASE"

NODE=$(hostname -s)
# slurmd -C prints the real topology, e.g.
# NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
hw=$(slurmd -C); hw=${hw%%$'\n'*}     # first line only (no pipe: pipefail + SIGPIPE)
hw_val() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
real_cpus=$(hw_val CPUs); real_mem=$(hw_val RealMemory)
NODE_CPUS=${SLURM_NODE_CPUS:-$real_cpus}
NODE_MEM=${SLURM_NODE_MEM_MB:-$(( real_mem > 1536 ? real_mem - 512 : real_mem ))}
if [ "$NODE_CPUS" = "$real_cpus" ]; then
  node_topo="CPUs=$real_cpus Boards=$(hw_val Boards) SocketsPerBoard=$(hw_val SocketsPerBoard) CoresPerSocket=$(hw_val CoresPerSocket) ThreadsPerCore=$(hw_val ThreadsPerCore)"
  overrides=""
else
  node_topo="CPUs=$NODE_CPUS"
  overrides="SlurmdParameters=config_overrides"
fi
if [ "$SLURM_ACCOUNTING" = 1 ]; then
  acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$SLURMDBD_PORT"
else
  acct="AccountingStorageType=accounting_storage/none"
fi

if [ "$SLURM_FAKE_GPUS" -gt 0 ] 2>/dev/null; then
  gres_types="GresTypes=gpu
AccountingStorageTRES=gres/gpu"
  node_gres="Gres=gpu:$SLURM_FAKE_GPUS"
  new_gres="# generated by start-slurm.sh: $SLURM_FAKE_GPUS GPU(s) that do not exist (no File=), for tests
NodeName=$NODE Name=gpu File=/dev/null Count=$SLURM_FAKE_GPUS"
else
  gres_types=""; node_gres=""; new_gres="# generated by start-slurm.sh: no GPUs"
fi

# ---------------------------------------------------------------- config
new_conf=$(cat <<EOF
# generated by start-slurm.sh
ClusterName=$SLURM_CLUSTER_NAME
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$SLURM_BASE/state
SlurmdSpoolDir=$SLURM_BASE/spool
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$SLURM_BASE/log/slurmctld.log
SlurmdLogFile=$SLURM_BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
# no systemd / cgroup plugins: plain /proc process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
$acct
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without this a job with no --mem gets the whole node's memory
DefMemPerCPU=1024
ReturnToService=2
# completed jobs stay visible to squeue/scontrol for 300 s
# (the Snakemake plugin needs >= 3 x its status-check interval to use squeue)
MinJobAge=300
$overrides
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 $node_topo RealMemory=$NODE_MEM $node_gres State=UNKNOWN
PartitionName=$SLURM_PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$new_conf" ] \
   || [ "$(cat /etc/slurm/gres.conf 2>/dev/null)" != "$new_gres" ]; then
  for d in slurmdbd slurmctld slurmd; do
    alive $d && die "$d is running with another slurm.conf/gres.conf; run stop-slurm.sh first"
  done
  printf '%s\n' "$new_conf" > /etc/slurm/slurm.conf
  printf '%s\n' "$new_gres" > /etc/slurm/gres.conf
  log "wrote /etc/slurm/slurm.conf and gres.conf"
fi

# wait_for DESCRIPTION TIMEOUT_S COMMAND...
wait_for() {
  local what=$1 limit=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- munged
T_DAEMONS=$(now)
if ! alive munged && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "a munged not started by this script is already serving /run/munge; using it"
elif ! alive munged; then
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  # munged forks itself; it refuses to start if another munged owns the socket
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$PIDS/munged.pid"
  log "munged started, pid $(cat $PIDS/munged.pid)"
fi
wait_for munged 15 bash -c 'munge -n | unmunge'

# ---------------------------------------------------------------- accounting
if [ "$SLURM_ACCOUNTING" = 1 ]; then
  if ! alive mariadbd; then
    if [ ! -d "$SLURM_BASE/mysql/mysql" ]; then
      install -d -o mysql -g mysql "$SLURM_BASE/mysql"
      mariadb-install-db --no-defaults --user=mysql --datadir="$SLURM_BASE/mysql" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$SLURM_BASE/log/mariadb-install-db.log" 2>&1 \
        || { cat "$SLURM_BASE/log/mariadb-install-db.log"; die "mariadb-install-db failed"; }
    fi
    # mariadbd runs as mysql: its pid/log/socket must be in a dir mysql can write
    install -d -o mysql -g mysql "$SLURM_BASE/mysqlrun"
    nohup /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$SLURM_BASE/mysql" \
      --socket="$MYSQL_SOCKET" --pid-file="$SLURM_BASE/mysqlrun/mariadbd.pid" \
      --skip-networking --log-error="$SLURM_BASE/mysqlrun/mariadbd.log" \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
      >/dev/null 2>&1 </dev/null &
    echo $! > "$PIDS/mariadbd.pid"
    log "mariadbd started, pid $(cat $PIDS/mariadbd.pid)"
  fi
  wait_for mariadbd 60 mariadb-admin --socket="$MYSQL_SOCKET" ping
  cat > /etc/slurm/slurmdbd.conf <<EOF
# generated by start-slurm.sh
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=$NODE
DbdPort=$SLURMDBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$SLURM_BASE/log/slurmdbd.log
PidFile=$PIDS/slurmdbd.pid
StorageType=accounting_storage/mysql
# root over the unix socket (MariaDB's unix_socket auth; slurmdbd runs as root).
# slurmdbd has no socket-path option; libmariadb takes it from MYSQL_UNIX_PORT.
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  if ! alive slurmdbd; then
    MYSQL_UNIX_PORT=$MYSQL_SOCKET MARIADB_UNIX_PORT=$MYSQL_SOCKET /usr/sbin/slurmdbd
    wait_for "slurmdbd pid file" 30 alive slurmdbd
    log "slurmdbd started, pid $(cat $PIDS/slurmdbd.pid)"
  fi
  wait_for slurmdbd 60 sacctmgr -n show cluster
fi

# ---------------------------------------------------------------- slurmctld, slurmd
if ! alive slurmctld; then
  /usr/sbin/slurmctld
  wait_for "slurmctld pid file" 30 alive slurmctld
  log "slurmctld started, pid $(cat $PIDS/slurmctld.pid)"
fi
wait_for slurmctld 60 bash -c 'scontrol ping | grep -q UP'
if ! alive slurmd; then
  /usr/sbin/slurmd -N "$NODE"
  wait_for "slurmd pid file" 30 alive slurmd
  log "slurmd started, pid $(cat $PIDS/slurmd.pid)"
fi
end=$(( $(date +%s) + 60 ))
resumed=0
while :; do
  state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null || true)
  case $state in idle|mixed|allocated|completing) break ;; esac
  # a node drained/down by an earlier run (e.g. another gres.conf) keeps that state in
  # StateSaveLocation: this script owns the node, so resume it once
  case $state in drained|draining|down|inval|drain*)
    if [ $resumed = 0 ]; then
      log "node $NODE is '$state' ($(sinfo -h -n "$NODE" -o '%E')); resuming it"
      scontrol update nodename="$NODE" state=resume || true
      resumed=1
    fi ;;
  esac
  if [ "$(date +%s)" -ge "$end" ]; then
    sinfo -R; tail -20 "$SLURM_BASE/log/slurmd.log"; die "node $NODE is '$state' after 60 s"
  fi
  sleep 0.2
done

log "cluster up: node $NODE ($NODE_CPUS CPUs, $NODE_MEM MiB), partition $SLURM_PARTITION, accounting=$SLURM_ACCOUNTING"
log "daemon start took $(since "$T_DAEMONS") s, whole script $(since "$T_START") s"
for f in "$PIDS"/*.pid; do printf '  %-10s %s\n' "$(basename "$f" .pid)" "$(cat "$f")"; done
