#!/usr/bin/env bash
# Issue 17's measurement: the phi^4 default (mixture base for the zero mode) against the same
# design with the Gaussian base, 16384 samples against an independent HMC reference of 16384
# configurations (seed 1000), at 5/10/20/50 NFE (exp, order 3) and sampler seeds 0 and 100000.
# Usage: scripts/measure-base.sh OUTDIR [CONFIG...]   (default: phi4_gaussian.toml phi4.toml)
set -euo pipefail
out=${1:-out/base}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(examples/phi4_gaussian.toml examples/phi4.toml)
gud=${GUD:-target/release/gud}
mkdir -p "$out"
ref="$out/hmc_L8_m2-4_lam8_n16384_seed1000.npy"
[ -f "$ref" ] || "$gud" phi4 sample --size 8 --m2 -4 --lam 8 --samples 16384 --seed 1000 --out "$ref" > /dev/null
for cfg in "${configs[@]}"; do
  name=$(basename "$cfg" .toml)
  run="$out/$name"
  if [ ! -f "$run/checkpoint.safetensors" ]; then
    start=$(date +%s)
    "$gud" train --config "$cfg" --out "$run" 2> "$out/$name.train.log"
    echo "$name: trained in $(( $(date +%s) - start )) s"
  fi
  for seed in 0 100000; do
    for nfe in 5 10 20 50; do
      s="$out/$name.seed$seed.nfe$nfe.npy"
      "$gud" sample --run "$run" --steps "$nfe" --samples 16384 --seed "$seed" --out "$s" > /dev/null 2>&1
      "$gud" eval --samples "$s" --reference "$ref" --phi4 -4,8 --json > "$s.json"
      python3 - "$name" "$seed" "$nfe" "$s.json" <<'PY'
import json, sys
name, seed, nfe, path = sys.argv[1:]
r = json.load(open(path))["phi4"]
z = " ".join(f"{o['name']}={o['z']:+.2f}" for o in r["observables"])
print(f"{name:>14} seed {seed:>6} NFE {nfe:>2}: max|z| {r['max_abs_z']:.2f}  {z}")
PY
    done
  done
done
