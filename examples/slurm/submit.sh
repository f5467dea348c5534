#!/usr/bin/env bash
# Exact sampling on Slurm: TASKS array tasks of SHARD_COUNT proposals each, then a merge job
# that runs once all of them succeeded (sbatch --dependency=afterok). Prints the merge job's id.
# Usage: OUT=DIR TASKS=4 SHARD_COUNT=1024 GUD_ARGS="--config C --flow F.safetensors --m2 -4 --lam 4.572 --seed 1" \
#        examples/slurm/submit.sh [extra sbatch flags, e.g. --partition=...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${OUT:?OUT: the folder of the shards and the chain}" "${TASKS:?TASKS: array tasks}"
: "${SHARD_COUNT:?SHARD_COUNT: proposals per task}" "${GUD_ARGS:?GUD_ARGS: the proposal flags}"
mkdir -p "$OUT"
export OUT SHARD_COUNT GUD_ARGS GUD="${GUD:-gud}" HMC="${HMC:-0}"
array=$(sbatch --parsable --chdir="$OUT" --array=0-$((TASKS - 1)) --export=ALL "$@" "$here/propose.sbatch")
merge=$(sbatch --parsable --chdir="$OUT" --dependency=afterok:"$array" --export=ALL "$@" "$here/merge.sbatch")
echo "$merge"
