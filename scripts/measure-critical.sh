#!/usr/bin/env bash
# Issue 16's near-critical measurement: the ensembles of Albergo, Kanwar & Shanahan 2019
# (m2 = -4; L = 6, 8, 10 at lam = 6.975, 6.008, 5.550): the phi^4 default's design, network and
# training (examples/phi4.toml) retrained at each, then scripts/measure-exact.sh at K points.
# Usage: scripts/measure-critical.sh OUTDIR PROPOSALS "L:LAM:K,K ..."
#        (e.g. out/critical 512 "6:6.975:10,20 8:6.008:10t,ode 10:5.550:5t"; each K as in
#        scripts/measure-exact.sh: K points, Kt on the tuned grid, ode[TOL])
set -euo pipefail
out=$1 n=$2 ensembles=$3
gud=${GUD:-target/release/gud}
mkdir -p "$out"
for e in $ensembles; do
  IFS=: read -r size lam ks <<< "$e"
  dir="$out/L${size}_lam${lam}"
  mkdir -p "$dir"
  sed -e "s/^size = 8$/size = $size/" -e "s/^lam = 8.0$/lam = $lam/" examples/phi4.toml > "$dir/config.toml"
  grep -q "^size = $size$" "$dir/config.toml" && grep -q "^lam = $lam$" "$dir/config.toml"
  [ -f "$dir/run/checkpoint.safetensors" ] || "$gud" train --config "$dir/config.toml" --out "$dir/run" 2> "$dir/train.log"
  echo "== L = $size, m2 = -4, lam = $lam"
  # shellcheck disable=SC2086
  SIZE=$size M2=-4 LAM=$lam scripts/measure-exact.sh "$dir/run" "$dir" "$n" ${ks//,/ }
done
