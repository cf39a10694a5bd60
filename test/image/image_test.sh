#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks the OCI image scripts/build-image.sh wrote (make image-test):
#  - the layout holds the tag, its config runs as 65532:65532, and the
#    oci-archive tarball holds the same index;
#  - unpacked (umoci unpack --rootless), every shipped binary and the runtime
#    library resolve each library they load inside the rootfs: the rootfs's
#    own loader lists them with the host's cache inhibited, and a library it
#    had to take from the host (a path outside the rootfs) or could not find
#    fails the test. A copy with libjansson removed must fail the same check,
#    so the check is known to catch a missing library;
#  - the remote client (docs/REMOTE.md): libcudart.so.12 and libcublas.so.12
#    in /usr/lib/flexpu/remote, where the chart's node.remote agent takes
#    them from (--remote-client-dir) and flexpu-remoted where its GPU nodes'
#    agent runs it (--remote-server); libcublas finds the image's own
#    libcudart beside it (a rootfs without that fails the check), and the
#    client asks of an application's container only what docs/REMOTE.md
#    says: libssl.so.3 and libcrypto.so.3 (OPENSSL_3.0.0 symbols), glibc
#    2.32 or later;
#  - where this machine can chroot (root, or an unprivileged user namespace),
#    each binary runs --help in the rootfs as user 65532, and the runtime
#    library, and the remote client, preload into flexpu-smi there;
#  - every Debian package in packages.txt has its control file in
#    /var/lib/dpkg/status.d and its copyright file.
#
#   image_test.sh OUT_DIR [TAG]     (OUT_DIR: build-image.sh's --out, out/image)
set -euo pipefail
out="$(cd "${1:?usage: $0 OUT_DIR [TAG]}" && pwd)"
tag="${2:-dev}"
oci="$out/oci"
work="$(mktemp -d "${TMPDIR:-/tmp}/flexpu-image-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }
pass() { echo "image-test: ok   $1"; }
start=$SECONDS

# --- the layout and its config ---
[ -f "$oci/oci-layout" ] && [ -f "$oci/index.json" ] || fail "$oci is not an OCI image layout"
mdigest="$(jq -r --arg t "$tag" \
  '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
  "$oci/index.json")"
[ -n "$mdigest" ] || fail "$oci/index.json has no manifest tagged $tag: $(cat "$oci/index.json")"
blob() { echo "$oci/blobs/${1%%:*}/${1#*:}"; }
manifest="$(blob "$mdigest")"
[ "$(sha256sum <"$manifest" | cut -d' ' -f1)" = "${mdigest#sha256:}" ] ||
  fail "manifest $mdigest does not match its digest"
config="$(blob "$(jq -r .config.digest "$manifest")")"
[ "$(jq -r .config.User "$config")" = 65532:65532 ] ||
  fail "image user is '$(jq -r .config.User "$config")', want 65532:65532"
[ "$(jq -r '.os + "/" + .architecture' "$config")" = "linux/$(dpkg --print-architecture)" ] ||
  fail "image platform is $(jq -r '.os + "/" + .architecture' "$config")"
[ "$(jq '.layers | length' "$manifest")" -ge 1 ] || fail "the image has no layer"
for l in $(jq -r '.layers[].digest' "$manifest"); do
  [ "$(sha256sum <"$(blob "$l")" | cut -d' ' -f1)" = "${l#sha256:}" ] || fail "layer $l is corrupt"
done
archive="$out/flexpu-$tag.oci.tar"
[ -f "$archive" ] || fail "no oci-archive $archive"
cmp -s <(tar -xOf "$archive" ./index.json) "$oci/index.json" ||
  fail "$archive does not hold the layout's index.json"
pass "layout $oci:$tag: manifest and layers match their digests, user 65532:65532, oci-archive alike"

# --- unpacked ---
umoci unpack --rootless --image "$oci:$tag" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
client=usr/lib/flexpu/remote
shipped=(usr/bin/flexpu-scheduler usr/bin/flexpu-node usr/bin/flexpu-smi usr/lib/flexpu/libflexpu-cuda.so
         usr/bin/flexpu-remoted "$client/libcudart.so.12" "$client/libcublas.so.12")
for f in "${shipped[@]}"; do [ -f "$rootfs/$f" ] || fail "the image has no /$f"; done
grep -q '^nonroot:x:65532:65532:' "$rootfs/etc/passwd" || fail "/etc/passwd has no user 65532"
[ "$(stat -c %a "$rootfs/tmp")" = 1777 ] || fail "/tmp is not mode 1777"

# The rootfs's loader, found inside the rootfs (its /lib64 link is absolute).
inside() { # rootfs path: the path with absolute links resolved inside rootfs
  local r="$1" p="$2" t n=0
  while [ -L "$r$p" ] && [ $n -lt 20 ]; do
    t="$(readlink "$r$p")"
    case "$t" in /*) p="$t" ;; *) p="$(dirname "$p")/$t" ;; esac
    n=$((n + 1))
  done
  echo "$r$p"
}
# Lists what FILE loads with the rootfs's loader and library directories
# only (the host's ld.so.cache inhibited), and names each library that
# resolved outside the rootfs or not at all. Prints nothing when complete.
missing_libs() { # rootfs file
  local r="$1" ld dirs list
  ld="$(inside "$r" /lib64/ld-linux-x86-64.so.2)"
  [ -x "$ld" ] || { echo "no loader /lib64/ld-linux-x86-64.so.2"; return; }
  dirs="$r/lib/x86_64-linux-gnu:$r/usr/lib/x86_64-linux-gnu:$r/lib:$r/usr/lib"
  list="$("$ld" --inhibit-cache --library-path "$dirs" --list "$r/$2" 2>&1)" || true
  awk -v r="$r/" '
    / => not found/ { print $1 " (not found)"; next }
    / => \// { if (index($3, r) != 1) print $1 " (from the host: " $3 ")" }
  ' <<<"$list"
  grep -q ' => ' <<<"$list" || echo "the loader listed nothing: $list"
}
for f in "${shipped[@]}"; do
  m="$(missing_libs "$rootfs" "$f")"
  [ -z "$m" ] || fail "/$f loads libraries the image lacks: $m"
done
pass "each shipped file loads its libraries from the image alone (${shipped[*]##*/})"

# No shipped file looks for libraries in a path of the build machine: a
# RUNPATH or RPATH, if any, is $ORIGIN (the client's libcublas).
for f in "${shipped[@]}"; do
  rp="$(readelf -d "$rootfs/$f" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')"
  [ -z "$rp" ] || [ "$rp" = '$ORIGIN' ] || fail "/$f has RUNPATH or RPATH '$rp', want none or \$ORIGIN"
done
pass "no shipped file has a RUNPATH or RPATH but \$ORIGIN"

# The check catches a missing library: a copy without libjansson.
cp -a "$rootfs" "$work/broken"
find "$work/broken" -name 'libjansson.so*' -delete
m="$(missing_libs "$work/broken" usr/bin/flexpu-scheduler)"
grep -q 'libjansson.so' <<<"$m" || fail "a rootfs without libjansson passed the check: '$m'"
rm -rf "$work/broken"
pass "a rootfs without libjansson fails that check ($m)"

# --- the remote client and server, where the chart looks for them ---
chart="$(cd "$(dirname "$0")/../.." && pwd)/deploy/helm/flexpu/templates"
grep -q -- "--remote-client-dir=/$client\$" "$chart/remote.yaml" ||
  fail "the chart's remote.yaml does not take the client from /$client"
grep -q -- "--remote-server=/usr/bin/flexpu-remoted\$" "$chart/node.yaml" ||
  fail "the chart's node.yaml does not run /usr/bin/flexpu-remoted"
# libcublas.so.12 loads the client's libcudart.so.12 by RUNPATH \$ORIGIN (not
# a Debian package's, not the build machine's).
l="$(inside "$rootfs" /lib64/ld-linux-x86-64.so.2)"
got="$("$l" --inhibit-cache --library-path "$rootfs/lib/x86_64-linux-gnu:$rootfs/usr/lib/x86_64-linux-gnu" \
        --list "$rootfs/$client/libcublas.so.12" | awk '$1 == "libcudart.so.12" {print $3}')"
[ "$got" = "$rootfs/$client/libcudart.so.12" ] ||
  fail "/$client/libcublas.so.12 loads libcudart.so.12 from '$got', want the image's /$client/libcudart.so.12"
cp -a "$rootfs" "$work/broken"
rm "$work/broken/$client/libcudart.so.12"
m="$(missing_libs "$work/broken" "$client/libcublas.so.12")"
grep -q 'libcudart.so.12' <<<"$m" || fail "a rootfs without the client's libcudart passed the check: '$m'"
rm -rf "$work/broken"
# What the client needs in an application's container (docs/REMOTE.md,
# "The client's container"): a newer need must change that text too.
needed="$(readelf -d "$rootfs/$client/libcudart.so.12" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')"
[ "$needed" = "ld-linux-x86-64.so.2 libc.so.6 libcrypto.so.3 libssl.so.3 " ] ||
  fail "the client's libcudart.so.12 needs '$needed', docs/REMOTE.md says libssl.so.3, libcrypto.so.3 and glibc"
for f in libcudart.so.12 libcublas.so.12; do
  vers="$(objdump -T "$rootfs/$client/$f" | grep -oE '(OPENSSL|GLIBC)_[0-9.]+' | sort -u)"
  ossl="$(grep '^OPENSSL_' <<<"$vers" | grep -vx OPENSSL_3.0.0 || true)"
  [ -z "$ossl" ] || fail "$f needs OpenSSL symbol versions after 3.0.0: $ossl"
  glibc="$(grep '^GLIBC_' <<<"$vers" | sort -V | tail -n 1)"
  [ "$(printf '%s\n' "$glibc" GLIBC_2.32 | sort -V | tail -n 1)" = GLIBC_2.32 ] ||
    fail "$f needs $glibc, docs/REMOTE.md says glibc 2.32"
done
pass "the remote client in /$client (where the chart takes it), libcublas loading the image's libcudart (a rootfs without it fails); it needs OpenSSL 3.0 and glibc 2.32 at most; flexpu-remoted where the chart runs it"

# --- run, where this machine can chroot ---
run=()
if [ "$(id -u)" = 0 ] && chroot "$rootfs" /usr/bin/flexpu-smi --help >/dev/null 2>&1; then
  run=(chroot --userspec=65532:65532 "$rootfs")
elif unshare -r chroot "$rootfs" /usr/bin/flexpu-smi --help >/dev/null 2>&1; then
  # In a user namespace only its root is mapped: the commands run as it.
  run=(unshare -r chroot "$rootfs")
fi
if [ ${#run[@]} -gt 0 ]; then
  for b in flexpu-scheduler flexpu-node flexpu-smi flexpu-remoted; do
    o="$(env -i PATH="$PATH" "${run[@]}" "/usr/bin/$b" --help 2>&1)" || fail "$b --help in the image: $o"
    grep -q "usage: $b" <<<"$o" || fail "$b --help in the image printed: $o"
  done
  # The library every tenant process gets preloaded; without a slice it
  # stays out of the way. The loader only warns about a preload it cannot
  # load, so the warning is what fails.
  o="$(env -i PATH="$PATH" "${run[@]}" /lib64/ld-linux-x86-64.so.2 \
         --preload /usr/lib/flexpu/libflexpu-cuda.so /usr/bin/flexpu-smi --help 2>&1)" ||
    fail "flexpu-smi with the runtime library preloaded in the image: $o"
  ! grep -q 'cannot be preloaded' <<<"$o" && grep -q 'usage: flexpu-smi' <<<"$o" ||
    fail "flexpu-smi with the runtime library preloaded printed: $o"
  # The client as a remote pod's container gets it: both preloaded (the
  # loader only warns about a preload it cannot load); it connects at its
  # first CUDA call, not at load.
  o="$(env -i PATH="$PATH" "${run[@]}" /lib64/ld-linux-x86-64.so.2 \
         --preload "/$client/libcudart.so.12 /$client/libcublas.so.12" /usr/bin/flexpu-smi --help 2>&1)" ||
    fail "flexpu-smi with the remote client preloaded in the image: $o"
  ! grep -q 'cannot be preloaded' <<<"$o" && grep -q 'usage: flexpu-smi' <<<"$o" ||
    fail "flexpu-smi with the remote client preloaded printed: $o"
  pass "flexpu-scheduler, flexpu-node, flexpu-smi, flexpu-remoted --help run in the image (${run[*]:0:2}), the runtime library and the remote client preload"
else
  echo "image-test: skip running the binaries: this machine can neither chroot nor unshare -r"
fi

# --- package provenance ---
n=0
while read -r p v _; do
  s="$rootfs/var/lib/dpkg/status.d/$p"
  [ -f "$s" ] || fail "package $p has no $s"
  grep -qx "Version: $v" "$s" || fail "$s does not say Version: $v"
  [ -f "$rootfs/usr/share/doc/$p/copyright" ] || [ -L "$rootfs/usr/share/doc/$p" ] ||
    fail "package $p has no copyright file in the image"
  n=$((n + 1))
done <"$rootfs/usr/lib/flexpu/packages.txt"
[ "$n" -gt 0 ] || fail "packages.txt lists no package"
grep -q '^libc6 ' "$rootfs/usr/lib/flexpu/packages.txt" || fail "packages.txt has no libc6"
[ "$(find "$rootfs/var/lib/dpkg/status.d" -type f | wc -l)" = "$n" ] ||
  fail "status.d has $(find "$rootfs/var/lib/dpkg/status.d" -type f | wc -l) files for $n packages"
pass "$n Debian packages, each with its control file and copyright ($((SECONDS - start)) s)"
