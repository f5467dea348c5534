#!/usr/bin/env bash
# `make test-slurm`: exact sampling as a Slurm job array against a real one-node Slurm
# (Debian's slurm-wlm and munge, installed when missing), started here on loopback as root and
# stopped at the end: examples/slurm/submit.sh proposes 4 shards as an array and merges them in
# a job that depends on it (afterok); the merged chain must equal the single run's byte for
# byte. Prints "1 passed, 0 failed" or "0 passed, 1 failed".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gud=${GUD:-$root/target/debug/gud}
[ -x "$gud" ] || (cd "$root" && env -u LIBTORCH cargo build -p gud-cli --no-default-features)
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null
fi
work=$(mktemp -d /tmp/gud-slurm.XXXXXX)
cleanup() {
  [ -f "$work/slurmd.pid" ] && kill "$(cat "$work/slurmd.pid")" 2> /dev/null || true
  [ -f "$work/slurmctld.pid" ] && kill "$(cat "$work/slurmctld.pid")" 2> /dev/null || true
  [ -f "$work/munged.pid" ] && kill "$(cat "$work/munged.pid")" 2> /dev/null || true
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT
# munge: a key of our own and a daemon on a socket of our own
mkdir -p "$work/munge" && chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --force --key-file="$work/munge/munge.key" --socket="$work/munge/socket" \
  --pid-file="$work/munged.pid" --log-file="$work/munged.log" --seed-file="$work/munge/seed"
cpus=$(nproc)
cat > "$work/slurm.conf" <<EOF
ClusterName=gudtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$work/munge/socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
MpiDefault=none
JobCompType=jobcomp/none
NodeName=gudnode NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=gudnode Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$work/state" "$work/spool"
export SLURM_CONF=$work/slurm.conf
slurmctld
slurmd -N gudnode
for _ in $(seq 1 50); do
  sinfo -h -o %T 2> /dev/null | grep -qE "idle|mixed" && break
  sleep 0.2
done
start=$(date +%s)
# a small run: the tiny free-field design, a phi^4 target, 4 shards of 25 proposals
cat > "$work/g.toml" <<EOF
[data]
kind = 'free-field'
size = 4
m2 = 0.5
samples = 64
[design]
mean = 'zero'
basis = { kind = 'fourier' }
prior = { kind = 'free' }
[score]
kind = 'gaussian'
[sampler]
kind = 'exp'
steps = 4
EOF
args="--config $work/g.toml --m2 -1 --lam 1 --seed 3"
# shellcheck disable=SC2086
"$gud" phi4 mcmc $args --proposals 100 --hmc 0 --out "$work/single.npy" > /dev/null
merge=$(OUT=$work/out TASKS=4 SHARD_COUNT=25 GUD="$gud" GUD_ARGS="$args" "$root/examples/slurm/submit.sh")
for _ in $(seq 1 600); do
  squeue -h | grep -q . || break
  sleep 0.2
done
took=$(( $(date +%s) - start ))
if cmp -s "$work/single.npy" "$work/out/chain.npy"; then
  echo "slurm: 4 array tasks and the merge job $merge (afterok) gave the single run's chain byte for byte in ${took} s"
  echo "1 passed, 0 failed"
else
  echo "slurm: the merged chain differs from the single run's (or is missing)" >&2
  ls -la "$work/out" >&2 || true
  tail -n 20 "$work"/out/*.log "$work/slurmctld.log" >&2 || true
  echo "0 passed, 1 failed"
  exit 1
fi
