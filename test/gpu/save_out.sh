#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A GPU run's results into the tree: unpacks OUT.tgz (out/ as the device
# tool brought it back) into bench/results/PREFIX-<device>-<commit>/, the
# device from the first field of out/device.txt (lower case, "nvidia "
# dropped, other characters as '-'), the commit from out/commit.txt
# ("unknown" for either when missing), and prints that directory. One copy
# for the `save` of test/gpu/remote_check.sh and bench/vgpu.sh.
#
#   test/gpu/save_out.sh PREFIX OUT.tgz    # from the checkout root
set -euo pipefail
prefix=${1:?usage: save_out.sh PREFIX OUT.tgz}
tgz=${2:?usage: save_out.sh PREFIX OUT.tgz}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar xzf "$tgz" -C "$tmp"
dev="" commit=""
# A missing file names "unknown" (a pipe from a missing file would stop the
# script under pipefail).
if [ -r "$tmp/out/device.txt" ]; then
    dev=$(cut -d, -f1 "$tmp/out/device.txt" | head -n 1 | tr 'A-Z' 'a-z' |
        sed 's/^nvidia //; s/[^a-z0-9]\+/-/g; s/^-//; s/-$//')
fi
[ ! -r "$tmp/out/commit.txt" ] || commit=$(cat "$tmp/out/commit.txt")
dest="bench/results/$prefix-${dev:-unknown}-${commit:-unknown}"
rm -rf "$dest" && mkdir -p "$dest"
cp -r "$tmp/out/." "$dest/"
echo "$dest"
