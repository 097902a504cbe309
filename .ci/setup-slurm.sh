#!/usr/bin/env bash
# One-node SLURM cluster on localhost for the tests in tests/slurm/: installs Debian's slurm-wlm and
# munge when missing, writes a slurm.conf for this machine, and starts munged, slurmctld and slurmd.
# Idempotent: daemons that already answer are left alone. Needs root.
# Exits 0 without a cluster only when the package registry cannot be reached (the tests then skip).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# primus-bridge local test cluster (.ci/setup-slurm.sh)"
LOG_DIR=/var/log/slurm

say() { echo "setup-slurm: $*"; }

install_packages() {
  if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v munged >/dev/null; then
    return 0
  fi
  if ! apt-get update -qq; then
    say "SKIP: the Debian package registry is unreachable; SLURM tests will be skipped"
    exit 0
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  say "installed slurm-wlm and munge"
}

munge_answers() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_answers; then return 0; fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
  chown munge:munge /etc/munge/munge.key
  chmod 0600 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge_answers && return 0; sleep 0.1; done
  say "munged did not start"; exit 1
}

node_line() {
  # The real CPUs and memory of this machine, under the node name the tests use.
  slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+/NodeName=localhost/'
}

conf_text() {
  cat <<EOF
$MARKER
ClusterName=primus-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
KillWait=30
MinJobAge=600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
$(node_line) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

write_conf() {
  if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
    say "keeping the existing $CONF (not written by this script)"
    return 0
  fi
  install -d "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /etc/slurm
  local text
  text=$(conf_text)
  if [[ -f "$CONF" ]] && [[ "$(cat "$CONF")" == "$text" ]]; then return 0; fi
  printf '%s\n' "$text" >"$CONF"
  say "wrote $CONF"
  if ctld_answers; then scontrol reconfigure; fi
}

ctld_answers() { scontrol ping 2>/dev/null | grep -q "is UP"; }

node_ready() { sinfo -h -n localhost -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; }

start_slurm() {
  if ! ctld_answers; then
    slurmctld
    for _ in $(seq 100); do ctld_answers && break; sleep 0.2; done
    ctld_answers || { say "slurmctld did not answer; see $LOG_DIR/slurmctld.log"; exit 1; }
  fi
  if ! pgrep -x slurmd >/dev/null; then
    slurmd -N localhost
  fi
  for _ in $(seq 100); do node_ready && break; sleep 0.2; done
  if ! node_ready; then
    scontrol update NodeName=localhost State=RESUME 2>/dev/null || true
    sleep 1
  fi
  node_ready || { say "node localhost is not idle: $(sinfo -h -n localhost -o '%t %E')"; exit 1; }
}

main() {
  if [[ $EUID -ne 0 ]]; then say "needs root"; exit 1; fi
  install_packages
  start_munge
  write_conf
  start_slurm
  say "cluster up: $(sinfo -h -o '%P %D %t %c CPUs')"
}

main "$@"
