#!/usr/bin/env bash
# A real single-node Slurm on this machine: munge, slurmctld, slurmd and slurmrestd (JWT over
# TCP on loopback), from Debian's packages. `start` is idempotent and prints what `serve`
# needs as `export NAME=value` lines:
#
#   eval "$(scripts/slurm-local.sh start)"   # then: cargo run --bin brightrun -- serve
#   scripts/slurm-local.sh stop
#   scripts/slurm-local.sh status
#
# The node has no GPU; it advertises GPUs of BrightRun's three types as generic resources
# (gres without device files), so a job asks for `--gres=gpu:<type>:<n>` exactly as on a GPU
# cluster, is scheduled and accounted the same way, and the trainer runs on the CPU.
# Needs root (munge and slurmd). Installs the Debian packages when they are missing. State,
# logs and the trainer's run folders live in SLURM_LOCAL_DIR (default /var/lib/brightrun-slurm).
# Diagnostics go to stderr; only the export lines go to stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
D="${SLURM_LOCAL_DIR:-/var/lib/brightrun-slurm}"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-6818}"
REST_PORT="${SLURM_LOCAL_REST_PORT:-6820}"
NODE="${SLURM_LOCAL_NODE:-$(hostname -s)}"
# Logical CPUs the node offers (more than the machine has, so several small CPU jobs run at
# once instead of queueing behind each other).
NODE_CPUS="${SLURM_LOCAL_CPUS:-8}"
JOB_USER="${SLURM_LOCAL_JOB_USER:-root}"
export SLURM_CONF="$D/etc/slurm.conf"

log() { echo "slurm-local: $*" >&2; }

need_root() {
  if [[ "$(id -u)" != 0 ]]; then
    log "must run as root (munged and slurmd need it)"
    exit 1
  fi
}

install_packages() {
  local missing=()
  for bin in munged slurmctld slurmd slurmrestd sbatch; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  if ((${#missing[@]})); then
    log "installing Slurm and munge from Debian's packages (missing: ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurmrestd slurm-client munge >&2
  fi
}

write_config() {
  mkdir -p "$D"/{etc,state,spool,log,munge,run,runs,models}
  chmod 755 "$D" "$D/etc" "$D/run"
  # Run folders are made by serve (0700, their files 0600: they hold a presigned URL and a
  # copy of the user's dataset) and written by the job, which runs as serve's own user.
  chmod 700 "$D/runs"
  chmod 1777 "$D/models"
  if [[ ! -f "$D/munge/munge.key" ]]; then
    dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 700 "$D/munge"
  chmod 400 "$D/munge/munge.key"
  if [[ ! -f "$D/etc/jwt_hs256.key" ]]; then
    dd if=/dev/urandom of="$D/etc/jwt_hs256.key" bs=32 count=1 status=none
  fi
  chmod 600 "$D/etc/jwt_hs256.key"
  local mem_mb
  mem_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
  cat >"$D/etc/slurm.conf" <<EOF
ClusterName=brightrun
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Credentials expire after 10 s (default 120): a requeued (preempted) job may start again
# 11 s after it stopped instead of 2 minutes.
AuthInfo=socket=$D/munge/munge.socket,cred_expire=10
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$D/etc/jwt_hs256.key
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No accounting database: keep finished jobs in the controller for a day, so their state and
# run time can still be read.
MinJobAge=86400
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=1
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$mem_mb Gres=gpu:a100_40gb:8,gpu:a100_80gb:8,gpu:h100_80gb:8 State=UNKNOWN
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # Slurm counts a GPU by its device file; these stand-ins are null devices, never opened (the trainer runs
  # on the CPU here).
  mkdir -p "$D/dev"
  for i in $(seq 0 23); do
    [[ -c "$D/dev/gpu$i" ]] || { rm -f "$D/dev/gpu$i"; mknod "$D/dev/gpu$i" c 1 3; }
  done
  cat >"$D/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu Type=a100_40gb File=$D/dev/gpu[0-7]
NodeName=$NODE Name=gpu Type=a100_80gb File=$D/dev/gpu[8-15]
NodeName=$NODE Name=gpu Type=h100_80gb File=$D/dev/gpu[16-23]
EOF
  chmod 644 "$D/etc/slurm.conf" "$D/etc/gres.conf"
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Each daemon starts with the lock's descriptor (9) closed: one that kept it would hold the
# lock for its whole life, and the next `start` would wait for it forever.
start_daemons() {
  if ! pid_alive "$D/run/munged.pid"; then
    log "starting munged"
    munged 9>&- --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket" \
      --pid-file="$D/run/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/seed"
  fi
  chmod 755 "$D/munge"
  if ! pid_alive "$D/run/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld 9>&-
  fi
  if ! pid_alive "$D/run/slurmd.pid"; then
    log "starting slurmd"
    slurmd -N "$NODE" 9>&-
  fi
  if ! pid_alive "$D/run/slurmrestd.pid"; then
    log "starting slurmrestd on 127.0.0.1:$REST_PORT"
    # slurmrestd refuses to run as root; with JWT it only forwards each request's token.
    SLURM_JWT=daemon setsid slurmrestd -u nobody -g nogroup -a rest_auth/jwt \
      -s openapi/v0.0.38 "127.0.0.1:$REST_PORT" >>"$D/log/slurmrestd.log" 2>&1 </dev/null 9>&- &
    echo $! >"$D/run/slurmrestd.pid"
  fi
  local ready=""
  for _ in $(seq 1 100); do
    if scontrol ping 2>/dev/null | grep -q UP &&
      sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)' &&
      (exec 3<>"/dev/tcp/127.0.0.1/$REST_PORT") 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.2
  done
  if [[ -z "$ready" ]]; then
    log "Slurm did not come up; logs in $D/log"
    tail -n 20 "$D"/log/*.log >&2 || true
    exit 1
  fi
  # A node left down by an earlier unclean stop comes back.
  scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
}

print_exports() {
  local token venv
  token="$(scontrol token username="$JOB_USER" lifespan=2592000 | sed -n 's/^SLURM_JWT=//p')"
  venv="$("$root/scripts/trainer-env.sh")"
  cat <<EOF
export CLUSTER_BACKEND=slurm
export SLURM_CONF=$SLURM_CONF
export SLURM_REST_URL=http://127.0.0.1:$REST_PORT
export SLURM_USER=$JOB_USER
export SLURM_JWT=$token
export SLURM_PARTITION=gpu
export SLURM_GPU_GRES='a100-40gb=gpu:a100_40gb,a100-80gb=gpu:a100_80gb,h100-80gb=gpu:h100_80gb'
export SLURM_RUNS_DIR=$D/runs
export TRAINER_PYTHON=$venv/bin/python
export TRAINER_SRC=$root/trainer/src
export TRAINER_MODELS_DIR=$D/models
EOF
}

stop_daemons() {
  for name in slurmrestd slurmd slurmctld munged; do
    if pid_alive "$D/run/$name.pid"; then
      log "stopping $name"
      kill "$(cat "$D/run/$name.pid")" 2>/dev/null || true
    fi
  done
  sleep 1
  for name in slurmrestd slurmd slurmctld munged; do
    pid_alive "$D/run/$name.pid" && kill -9 "$(cat "$D/run/$name.pid")" 2>/dev/null || true
    rm -f "$D/run/$name.pid"
  done
}

case "${1:-}" in
start)
  need_root
  install_packages
  mkdir -p "$D"
  exec 9>"$D/.lock"
  flock 9
  write_config
  start_daemons
  print_exports
  ;;
stop)
  need_root
  mkdir -p "$D"
  exec 9>"$D/.lock"
  flock 9
  stop_daemons
  ;;
status)
  scontrol ping && sinfo && squeue
  ;;
*)
  echo "usage: $0 start|stop|status" >&2
  exit 2
  ;;
esac
