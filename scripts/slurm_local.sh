#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for running spear-bench sweeps through
# hydra-submitit end to end (make slurm-local). Not part of `make install`.
#
#   scripts/slurm_local.sh [start]   install (apt) what is missing, write the config, start the
#                                    daemons, check with sinfo and `srun hostname`   (idempotent)
#   scripts/slurm_local.sh status    daemons and sinfo
#   scripts/slurm_local.sh stop      stop the daemons this script started (config stays)
#
# What runs: munged, mariadb + slurmdbd (accounting, so that `sacct` -- which submitit polls to
# notice cancelled or failed array tasks -- answers), slurmctld and slurmd, all on localhost.
# The node's CPUs and memory come from `slurmd -C`; one partition, `local`, the default.
# Config, state, spool and logs live in $SPEAR_SLURM_DIR (default /tmp/spear-slurm);
# /etc/slurm/slurm.conf is a symlink to its slurm.conf so that sinfo/sbatch find it without
# SLURM_CONF (an existing /etc/slurm/slurm.conf that is not ours is left alone, and you are told
# to export SLURM_CONF instead).
# Needs root (apt-get, daemons as root). Debian/Ubuntu packages: slurmctld slurmd slurm-client
# slurmdbd munge mariadb-server.
set -euo pipefail

DIR=${SPEAR_SLURM_DIR:-/tmp/spear-slurm}
CLUSTER=spear-local
PARTITION=local
PKGS=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
ETC_CONF=/etc/slurm/slurm.conf
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf '[slurm-local] %s\n' "$*"; }
die() { printf '[slurm-local] error: %s\n' "$*" >&2; exit 1; }

need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    die "needs root (it installs Debian packages and starts munged, mariadb, slurmdbd, slurmctld and slurmd as root).
  Run it as root (sudo make slurm-local), or install ${PKGS[*]} yourself and ask your admin."
  fi
}

running() {  # running <pidfile>
  [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for <seconds> <what> <command...>
  local t=$1 what=$2; shift 2
  for ((i = 0; i < t * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what did not come up within ${t}s; logs: $DIR/log/"
}

install_packages() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} with your package manager"
    say "installing ${missing[*]} (apt-get)"
    # policy-rc.d stops the packages from starting their services: this script starts them.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; }
  fi
}

write_config() {
  mkdir -p "$DIR"/{state,spool,log,run}
  local host cpus mem node topo
  host=$(hostname -s)
  node=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  [[ -n $cpus && -n $mem ]] || die "could not read CPUs/memory from 'slurmd -C': $node"
  topo=$(grep -o 'CPUs=[0-9]* Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$node" || echo "CPUs=$cpus")
  mem=$((mem * 95 / 100))  # leave the OS a little; a node with less than RealMemory is drained
  cat >"$DIR/slurm.conf" <<EOF
# written by scripts/slurm_local.sh -- one-node cluster on $host ($cpus CPUs, $mem MB)
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
KillWait=10
InactiveLimit=0
MinJobAge=300
MaxArraySize=10001
DefMemPerCPU=$((mem / cpus))
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 $topo RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  cat >"$DIR/slurmdbd.conf" <<EOF
# written by scripts/slurm_local.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=spear-local
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/slurmdbd.conf"
  # No cgroup plugin is used (proctrack/linuxproc, task/none), but slurmd loads one at start.
  cat >"$DIR/cgroup.conf" <<EOF
CgroupPlugin=autodetect
EOF
  link_etc_conf
}

link_etc_conf() {
  mkdir -p /etc/slurm
  if [[ -L $ETC_CONF || ! -e $ETC_CONF ]]; then
    ln -sfn "$DIR/slurm.conf" "$ETC_CONF"
    ETC_OK=1
  else
    ETC_OK=0
    say "warning: $ETC_CONF exists and is not ours; left alone. Use: export SLURM_CONF=$DIR/slurm.conf"
  fi
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  [[ -s /etc/munge/munge.key ]] || { say "creating /etc/munge/munge.key"; mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || /usr/sbin/create-munge-key -f; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
  wait_for 20 munged bash -c 'munge -n | unmunge'
}

start_mariadb() {
  if mysqladmin --protocol=socket ping >/dev/null 2>&1; then return; fi
  say "starting mariadb"
  if [[ -x /etc/init.d/mariadb ]]; then
    /etc/init.d/mariadb start >"$DIR/log/mariadb-start.log" 2>&1 || true
  fi
  if ! mysqladmin --protocol=socket ping >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    (setsid mysqld_safe >"$DIR/log/mariadb.log" 2>&1 &)
  fi
  wait_for 60 mariadb mysqladmin --protocol=socket ping
}

setup_db() {
  mysql --protocol=socket -u root <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'spear-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
  if running "$DIR/run/slurmdbd.pid"; then return; fi
  say "starting slurmdbd"
  # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF
  SLURM_CONF="$DIR/slurm.conf" slurmdbd || die "slurmdbd did not start; see $DIR/log/slurmdbd.log"
  wait_for 60 slurmdbd sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

start_slurm() {
  if ! running "$DIR/run/slurmctld.pid"; then
    say "starting slurmctld"
    slurmctld -f "$DIR/slurm.conf" || die "slurmctld did not start; see $DIR/log/slurmctld.log"
  fi
  wait_for 60 slurmctld scontrol ping
  if ! running "$DIR/run/slurmd.pid"; then
    say "starting slurmd"
    slurmd -f "$DIR/slurm.conf" || die "slurmd did not start; see $DIR/log/slurmd.log"
  fi
  wait_for 60 "an idle node" bash -c "sinfo -h -o %t | grep -Eq '^(idle|mix|alloc)'"
}

check() {
  say "sinfo:"
  sinfo
  say "srun hostname:"
  # a little memory and no exclusivity, so that the check also runs beside a busy array
  timeout 120 srun -N1 -n1 --mem=16M -t 1 hostname || die "srun hostname failed (or no free CPU for 2 min); logs: $DIR/log/"
}

how_to() {
  local env=""
  [[ ${ETC_OK:-1} == 1 ]] || env="SLURM_CONF=$DIR/slurm.conf "
  cat <<EOF
[slurm-local] one-node SLURM is up (cluster $CLUSTER, partition $PARTITION; config, state and logs in $DIR).
  Table 1 through it:  ${env}make reproduce-table1 LAUNCHER=slurm_local
  the slurm tests:     ${env}make test          (tests marked slurm run when this cluster answers)
  stop it:             make slurm-local-stop   (or: $HERE/slurm_local.sh stop)
EOF
}

stop() {
  need_root
  for d in slurmd slurmctld slurmdbd; do
    if running "$DIR/run/$d.pid"; then
      say "stopping $d"
      kill "$(cat "$DIR/run/$d.pid")" || true
    fi
  done
  sleep 1
  if mysqladmin --protocol=socket ping >/dev/null 2>&1; then
    say "stopping mariadb"
    if [[ -x /etc/init.d/mariadb ]]; then /etc/init.d/mariadb stop >/dev/null 2>&1 || mysqladmin --protocol=socket shutdown; else mysqladmin --protocol=socket shutdown; fi
  fi
  if pid=$(cat /run/munge/munged.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
    say "stopping munged"
    kill "$pid" || true
  fi
  say "stopped. Config and state stay in $DIR (rm -rf it to forget jobs); $ETC_CONF still points there."
}

status() {
  for d in slurmdbd slurmctld slurmd; do
    if running "$DIR/run/$d.pid"; then echo "$d: running (pid $(cat "$DIR/run/$d.pid"))"; else echo "$d: not running"; fi
  done
  if command -v sinfo >/dev/null; then timeout 10 sinfo || true; else echo "sinfo: not installed"; fi
}

case ${1:-start} in
  start)
    need_root
    install_packages
    if running "$DIR/run/slurmctld.pid" && running "$DIR/run/slurmd.pid"; then
      say "already running (config $DIR/slurm.conf)"
      link_etc_conf
    else
      write_config
    fi
    start_munge
    start_mariadb
    setup_db
    start_slurmdbd
    start_slurm
    check
    how_to
    ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
