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
#
# Config, state, spool and logs live in $SPEAR_SLURM_DIR (default /var/lib/spear-slurm): a
# root-owned directory this script creates itself, with a marker file inside. It refuses a
# directory it did not create, one that is or holds a symlink, one not owned by root or writable
# by group or others, and one below a folder where others could rename or replace it. Files are
# written under umask 077 into a temporary file and moved into place, so slurmdbd.conf (which
# holds the database password, random per installation) is never readable by others and a
# planted link is replaced, never followed. `stop` kills only processes whose /proc/<pid>/comm
# or exe is the daemon the pid file is named after, and mariadb and munged only when this script
# started them.
# /etc/slurm/slurm.conf is a symlink to its slurm.conf so that sinfo/sbatch find it without
# SLURM_CONF (an existing /etc/slurm/slurm.conf that is not ours is left alone, and you are told
# to export SLURM_CONF instead).
# Needs root (apt-get, daemons as root). Debian/Ubuntu packages: slurmctld slurmd slurm-client
# slurmdbd munge mariadb-server. `source scripts/slurm_local.sh` defines the functions and runs
# nothing (tests/integration/test_slurm_script.py).
set -euo pipefail
umask 077

DIR=${SPEAR_SLURM_DIR:-/var/lib/spear-slurm}
MARKER=.spear-slurm-dir
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

# ---------------------------------------------------------------- the directory
owner_mode() { stat -c '%u %a' -- "$1"; }

unsafe_dir() {  # unsafe_dir <dir>: why others could change <dir>, or nothing
  local d=$1 uid mode
  if [[ -L $d ]]; then echo "$d is a symlink"; return; fi
  if [[ ! -d $d ]]; then echo "$d is not a directory"; return; fi
  read -r uid mode < <(owner_mode "$d")
  if [[ $uid != 0 ]]; then echo "$d is owned by uid $uid, not root"; return; fi
  if (( 8#$mode & 8#022 )); then echo "$d is writable by group or others (mode $mode)"; fi
}

unsafe_parents() {  # unsafe_parents <dir>: an ancestor in which others could rename or replace <dir>
  local p uid mode
  p=$(dirname -- "$1")
  while :; do
    if [[ -L $p ]]; then echo "its parent $p is a symlink"; return; fi
    if [[ ! -d $p ]]; then echo "its parent $p is not a directory"; return; fi
    read -r uid mode < <(owner_mode "$p")
    if [[ $uid != 0 ]]; then echo "its parent $p is owned by uid $uid, not root"; return; fi
    # writable by others is safe only with the sticky bit: then they cannot rename what root made
    if (( 8#$mode & 8#022 )) && ! (( 8#$mode & 8#1000 )); then
      echo "its parent $p is writable by group or others (mode $mode)"; return
    fi
    if [[ $p == / ]]; then return; fi
    p=$(dirname -- "$p")
  done
}

check_dir() {  # check_dir <dir>: die unless this script created <dir> and nobody else can change it
  local d=$1 why sub link
  [[ $d == /* ]] || die "SPEAR_SLURM_DIR=$d must be an absolute path"
  why=$(unsafe_parents "$d"); [[ -z $why ]] || die "refusing $d: $why"
  why=$(unsafe_dir "$d"); [[ -z $why ]] || die "refusing $d: $why"
  [[ -f $d/$MARKER && ! -L $d/$MARKER ]] \
    || die "refusing $d: this script did not create it (no $MARKER inside); remove it or set SPEAR_SLURM_DIR to a new path"
  link=$(find "$d" -type l -print -quit)
  [[ -z $link ]] || die "refusing $d: it holds a symlink ($link)"
  while IFS= read -r sub; do
    why=$(unsafe_dir "$sub"); [[ -z $why ]] || die "refusing $d: $why"
  done < <(find "$d" -mindepth 1 -type d)
}

make_dir() {  # create $DIR (root-owned, 0755, marked) unless it exists; then check it
  local why sub
  if [[ ! -e $DIR && ! -L $DIR ]]; then
    [[ $DIR == /* ]] || die "SPEAR_SLURM_DIR=$DIR must be an absolute path"
    why=$(unsafe_parents "$DIR"); [[ -z $why ]] || die "refusing $DIR: $why"
    mkdir -m 0755 -- "$DIR"
    printf 'created by scripts/slurm_local.sh\n' >"$DIR/$MARKER"
    chmod 0644 -- "$DIR/$MARKER"
  fi
  check_dir "$DIR"
  for sub in state spool log run; do
    [[ -d $DIR/$sub ]] || mkdir -m 0755 -- "$DIR/$sub"
  done
}

put() {  # put <mode> <path> < content: write into $DIR atomically (a planted link is replaced)
  local mode=$1 path=$2 tmp
  tmp=$(mktemp "$DIR/.put.XXXXXX")
  cat >"$tmp"
  chmod "$mode" -- "$tmp"
  mv -f -- "$tmp" "$path"
}

# ---------------------------------------------------------------- the daemons
daemon_pid() {  # daemon_pid <name> <pidfile>: print the pid when the file names a live <name>
  local name=$1 file=$2 pid comm exe
  [[ -f $file && ! -L $file ]] || return 1
  pid=$(head -c 32 -- "$file" | tr -dc '0-9')
  [[ -n $pid ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  exe=${exe% (deleted)}
  if [[ $comm != "$name" && ${exe##*/} != "$name" ]]; then
    say "warning: $file names pid $pid ($comm), not $name; leaving it alone" >&2
    return 1
  fi
  echo "$pid"
}

daemon() {  # daemon <command...>: start a daemon with the usual umask (files it makes for users)
  (umask 022; "$@")
}

running() {  # running <daemon>: $DIR/run/<daemon>.pid names a live <daemon>
  daemon_pid "$1" "$DIR/run/$1.pid" >/dev/null
}

stop_daemon() {  # stop_daemon <name> <pidfile>: kill it only when the file names that daemon
  local pid
  if pid=$(daemon_pid "$1" "$2"); then
    say "stopping $1 (pid $pid)"
    kill "$pid" || true
  fi
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
    (umask 022
     DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
       || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; })
  fi
}

db_password() {  # the database password: kept from slurmdbd.conf, else a fresh random one
  local old=""
  if [[ -f $DIR/slurmdbd.conf ]]; then old=$(sed -n 's/^StoragePass=//p' "$DIR/slurmdbd.conf"); fi
  if [[ $old =~ ^[A-Za-z0-9]+$ ]]; then echo "$old"; else head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'; fi
}

write_config() {
  make_dir
  local host cpus mem node topo pass
  host=$(hostname -s)
  node=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  [[ -n $cpus && -n $mem ]] || die "could not read CPUs/memory from 'slurmd -C': $node"
  topo=$(grep -o 'CPUs=[0-9]* Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$node" || echo "CPUs=$cpus")
  mem=$((mem * 95 / 100))  # leave the OS a little; a node with less than RealMemory is drained
  put 0644 "$DIR/slurm.conf" <<EOF
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
  pass=$(db_password)
  put 0600 "$DIR/slurmdbd.conf" <<EOF
# written by scripts/slurm_local.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
  # No cgroup plugin is used (proctrack/linuxproc, task/none), but slurmd loads one at start.
  put 0644 "$DIR/cgroup.conf" <<EOF
CgroupPlugin=autodetect
EOF
  link_etc_conf
}

link_etc_conf() {
  (umask 022; mkdir -p /etc/slurm)
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
  (umask 022; mkdir -p /run/munge /var/log/munge /var/lib/munge)
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  say "starting munged"
  daemon runuser -u munge -- /usr/sbin/munged
  wait_for 20 munged bash -c 'munge -n | unmunge'
  : >"$DIR/run/started-munged"   # stop stops munged only when this script started it
}

start_mariadb() {
  if mysqladmin --protocol=socket ping >/dev/null 2>&1; then return; fi
  say "starting mariadb"
  if [[ -x /etc/init.d/mariadb ]]; then
    daemon /etc/init.d/mariadb start >"$DIR/log/mariadb-start.log" 2>&1 || true
  fi
  if ! mysqladmin --protocol=socket ping >/dev/null 2>&1; then
    (umask 022; mkdir -p /run/mysqld) && chown mysql:mysql /run/mysqld
    (umask 022; setsid mysqld_safe >"$DIR/log/mariadb.log" 2>&1 &)
  fi
  wait_for 60 mariadb mysqladmin --protocol=socket ping
  : >"$DIR/run/started-mariadb"  # stop stops mariadb only when this script started it
}

setup_db() {
  local pass
  pass=$(sed -n 's/^StoragePass=//p' "$DIR/slurmdbd.conf")
  [[ $pass =~ ^[A-Za-z0-9]+$ ]] || die "no database password in $DIR/slurmdbd.conf; run start again"
  # the password goes through stdin, never a command line others can read in /proc
  mysql --protocol=socket -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
  if running slurmdbd; then return; fi
  say "starting slurmdbd"
  # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF
  daemon env SLURM_CONF="$DIR/slurm.conf" slurmdbd || die "slurmdbd did not start; see $DIR/log/slurmdbd.log"
  wait_for 60 slurmdbd sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

start_slurm() {
  if ! running slurmctld; then
    say "starting slurmctld"
    daemon slurmctld -f "$DIR/slurm.conf" || die "slurmctld did not start; see $DIR/log/slurmctld.log"
  fi
  wait_for 60 slurmctld scontrol ping
  if ! running slurmd; then
    say "starting slurmd"
    daemon slurmd -f "$DIR/slurm.conf" || die "slurmd did not start; see $DIR/log/slurmd.log"
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
  if [[ ! -e $DIR && ! -L $DIR ]]; then say "nothing to stop: $DIR does not exist"; return 0; fi
  check_dir "$DIR"
  for d in slurmd slurmctld slurmdbd; do
    stop_daemon "$d" "$DIR/run/$d.pid"
  done
  sleep 1
  if [[ -f $DIR/run/started-mariadb ]] && mysqladmin --protocol=socket ping >/dev/null 2>&1; then
    say "stopping mariadb"
    if [[ -x /etc/init.d/mariadb ]]; then /etc/init.d/mariadb stop >/dev/null 2>&1 || mysqladmin --protocol=socket shutdown; else mysqladmin --protocol=socket shutdown; fi
  fi
  rm -f -- "$DIR/run/started-mariadb"
  if [[ -f $DIR/run/started-munged ]]; then stop_daemon munged /run/munge/munged.pid; fi
  rm -f -- "$DIR/run/started-munged"
  say "stopped. Config and state stay in $DIR (rm -rf it to forget jobs); $ETC_CONF still points there."
}

status() {
  local d pid
  for d in slurmdbd slurmctld slurmd; do
    if pid=$(daemon_pid "$d" "$DIR/run/$d.pid" 2>/dev/null); then echo "$d: running (pid $pid)"; else echo "$d: not running"; fi
  done
  if command -v sinfo >/dev/null; then timeout 10 sinfo || true; else echo "sinfo: not installed"; fi
}

main() {
  case ${1:-start} in
    start)
      need_root
      install_packages
      make_dir
      if running slurmctld && running slurmd; then
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
}

# run only when executed: `source scripts/slurm_local.sh` defines the functions and returns
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
