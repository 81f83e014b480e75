#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and for trying the queue path:
#   launchers/local_slurm/slurm.sh start   install Debian's slurm-wlm + munge if needed, start munged, slurmctld, slurmd
#   launchers/local_slurm/slurm.sh stop    stop slurmd, then slurmctld, then munged
#   launchers/local_slurm/slurm.sh status  exit 0 when the node answers
# Runs as root without systemd; idempotent (start on a running cluster does nothing).
# The node is called "localhost" (NodeAddr 127.0.0.1) so the container's hostname does not matter.
set -euo pipefail

STATE=${DRX_SLURM_STATE:-/var/lib/drx-slurm}
CONF=/etc/slurm/slurm.conf
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

log() { echo "local_slurm: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
  if ! command -v apt-get >/dev/null; then log "apt-get not available: cannot install slurm-wlm/munge"; exit 3; fi
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" /var/log/slurm
  cat > "$CONF.tmp" <<CONF
# written by drx_workflows launchers/local_slurm/slurm.sh
ClusterName=drxlocal
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MailProg=/bin/true
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
# OverSubscribe: up to four one-core jobs share a core, so the queue drills run four jobs at once on 2 cores
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  mv "$CONF.tmp" "$CONF"
}

pidfile() {
  case "$1" in
    slurmd) echo "$STATE/slurmd.pid" ;;
    slurmctld) echo "$STATE/slurmctld.pid" ;;
    munged) echo /run/munge/munged.pid ;;
  esac
}

# The daemon's pid from its pid file, when that process is alive and is that daemon.
daemon_pid() {
  local f pid; f=$(pidfile "$1")
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}

running() { daemon_pid "$1" >/dev/null || pgrep -x "$1" >/dev/null; }

start() {
  install
  write_conf
  if ! running munged; then
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
  fi
  running slurmctld || /usr/sbin/slurmctld
  running slurmd || /usr/sbin/slurmd -N localhost
  for _ in $(seq 1 50); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then log "up"; return 0; fi
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
    sleep 0.2
  done
  log "the node did not become idle; see /var/log/slurm/"; exit 1
}

stop() {
  # Jobs left running would come back as ghosts on the next start.
  if running slurmctld; then scancel --full --signal=KILL -u root >/dev/null 2>&1 || true; scancel -u root >/dev/null 2>&1 || true; fi
  # slurmd first: once munge is gone it ignores SIGTERM.
  # Each daemon is stopped by the pid in its pid file (never by name: other users' daemons stay).
  local pid
  for d in slurmd slurmctld munged; do
    pid=$(daemon_pid "$d") || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  log "stopped"
}

status() { sinfo -h -N -o '%N %T' 2>/dev/null | grep -q localhost; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
