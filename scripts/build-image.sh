#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds flexpu's container image without a Docker daemon: an OCI image
# layout written by umoci, and the same as an oci-archive tarball.
#
#   scripts/build-image.sh [--build-dir DIR] [--out DIR] [--tag TAG]
#
# 1. a Release build of what the image ships (flexpu-scheduler, flexpu-node,
#    flexpu-smi, flexpu-remoted, libflexpu-cuda.so, and the remote client's
#    libcudart.so.12 and libcublas.so.12 in /usr/lib/flexpu/remote, where
#    the chart's node.remote agents take them from: docs/REMOTE.md) in a
#    build directory of its own (default build-image);
# 2. the shared libraries they load (ldd), each traced to the Debian
#    package that holds it on this machine (dpkg -S) and taken from that
#    exact package version (the apt cache, else apt-get download), unpacked
#    with dpkg -x: every file of the image's userland comes from a named
#    Debian package. The list is in the image (/var/lib/dpkg/status.d/, the
#    layout scanners such as trivy and syft read) and in OUT/packages.txt;
# 3. a root filesystem with those, the binaries, /etc/passwd with the
#    non-root user 65532 (nonroot) the scheduler runs as, and ld.so.cache;
# 4. umoci: init, new, unpack --rootless, repack, config (user 65532, labels).
#
# Output (default out/image): oci/ (the layout, tag TAG, default dev) and
# flexpu-TAG.oci.tar (the layout as an oci-archive). Push either with skopeo
# (apt-get install skopeo):
#   skopeo copy oci:out/image/oci:dev docker://REGISTRY/flexpu/flexpu:dev
#   skopeo copy oci-archive:out/image/flexpu-dev.oci.tar docker://REGISTRY/flexpu/flexpu:dev
# and point the Helm chart at it: --set image.registry=REGISTRY --set image.tag=dev
# (docs/INSTALL.md). test/image/image_test.sh checks what this writes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-image"
out="$root/out/image"
tag=dev
while [ $# -gt 0 ]; do
  case "$1" in
  --build-dir) build="$2"; shift 2 ;;
  --out) out="$2"; shift 2 ;;
  --tag) tag="$2"; shift 2 ;;
  *) echo "usage: $0 [--build-dir DIR] [--out DIR] [--tag TAG]" >&2; exit 2 ;;
  esac
done
if ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "build-image: --tag '$tag': want [A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128 characters" >&2
  exit 2
fi
for t in umoci dpkg dpkg-deb apt-get ldd ldconfig; do
  command -v "$t" >/dev/null || {
    echo "build-image: $t is missing (scripts/install-deps.sh installs umoci; the rest is Debian's base)" >&2
    exit 1
  }
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
start=$SECONDS
log() { echo "build-image: $* ($((SECONDS - start)) s)" >&2; }

# --- 1. the binaries, Release ---
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLEXPU_TESTS=OFF >/dev/null
ninja -C "$build" flexpu-scheduler flexpu-node flexpu-smi flexpu-cuda flexpu-remoted \
  flexpu-cudart flexpu-cublas >/dev/null
bins=("$build/flexpu-scheduler" "$build/flexpu-node" "$build/flexpu-smi" "$build/libflexpu-cuda.so"
      "$build/flexpu-remoted" "$build/remote/libcudart.so.12" "$build/remote/libcublas.so.12")
# The client's libcublas.so.12 loads the client's libcudart.so.12 (cuBLAS
# calls go over its connection), found beside it by RUNPATH $ORIGIN. That
# one dependency is not a Debian package's and needs none: it is a file
# this image ships, at the same place relative to libcublas in the image
# and in the node's copy (<root>/remote-lib), and its own libraries are
# traced below as any binary's. Any other library no package holds still
# fails the build.
own_dep() { # library path ldd printed for binary $2
  [ "$2" = "$build/remote/libcublas.so.12" ] &&
    [ "$(readlink -f "$1")" = "$(readlink -f "$build/remote/libcudart.so.12")" ]
}
log "built ${bins[*]##*/} in $build"

# --- 2. the Debian packages that hold their libraries ---
arch="$(dpkg --print-architecture)"
debs="${FLEXPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flexpu}/image-debs"
mkdir -p "$debs"
declare -A pkgs=()
# ca-certificates: the kube client's TLS roots for a kubeconfig without its
# own CA (in-cluster it uses the service account's).
pkgs[ca-certificates]=1
for b in "${bins[@]}"; do
  if ldd "$b" | grep -q 'not found'; then
    echo "build-image: ${b##*/} has libraries ldd cannot find:" >&2
    ldd "$b" | grep 'not found' >&2
    exit 1
  fi
  # "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" and the loader's own line.
  while read -r lib; do
    [ -n "$lib" ] || continue
    own_dep "$lib" "$b" && continue
    real="$(readlink -f "$lib")"
    # dpkg knows the path the package installed, which on a merged-/usr
    # system may be either spelling.
    owner=""
    for p in "$lib" "$real" "${lib/#\/usr\/lib\//\/lib\/}" "${real/#\/usr\/lib\//\/lib\/}" \
             "${lib/#\/lib\//\/usr\/lib\/}" "${real/#\/lib\//\/usr\/lib\/}"; do
      owner="$(dpkg -S "$p" 2>/dev/null | head -n 1 | cut -d: -f1)" && [ -n "$owner" ] && break
    done
    if [ -z "$owner" ]; then
      echo "build-image: ${b##*/} loads $lib, which no Debian package installed (dpkg -S);" \
           "the image takes libraries from Debian packages only" >&2
      exit 1
    fi
    pkgs[$owner]=1
  done < <(ldd "$b" | awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]*ld-linux/ {print $1}')
done
: >"$out/packages.txt"
declare -A files=()
want=()
for p in $(printf '%s\n' "${!pkgs[@]}" | sort); do
  v="$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null)" || {
    echo "build-image: package $p is not installed here" >&2; exit 1; }
  pa="$(dpkg-query -W -f='${Architecture}' "$p")"
  # Debian's file names spell the epoch's colon %3a.
  f="$debs/${p}_${v//:/%3a}_${pa}.deb"
  if [ ! -s "$f" ] && [ -s "/var/cache/apt/archives/${f##*/}" ]; then
    cp "/var/cache/apt/archives/${f##*/}" "$f.tmp" && mv "$f.tmp" "$f"
  fi
  # madison lists the versions the archive serves (not dpkg's own record).
  if [ ! -s "$f" ] && ! apt-cache madison "$p" |
       awk -F'|' -v v="$v" '{gsub(/ /, "", $2)} $2 == v {f = 1} END {exit !f}'; then
    # This machine has a version the archive has since replaced (a binNMU,
    # a point release): the archive's, same soname.
    c="$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"
    if [ -z "$c" ] || [ "$c" = "(none)" ]; then
      echo "build-image: $p $v is not in the archive and apt knows no other version (run apt-get update)" >&2
      exit 1
    fi
    echo "build-image: $p $v (installed here) is no longer in the archive; the image has $c" >&2
    v="$c"
    f="$debs/${p}_${v//:/%3a}_${pa}.deb"
  fi
  [ -s "$f" ] || want+=("$p=$v")
  files[$p]="$f"
  echo "$p $v $pa" >>"$out/packages.txt"
done
if [ ${#want[@]} -gt 0 ]; then
  log "apt-get download ${#want[@]} packages into $debs"
  (cd "$debs" && apt-get download -q "${want[@]}" >/dev/null 2>"$debs/.err") || {
    echo "build-image: apt-get download failed (run apt-get update):" >&2
    cat "$debs/.err" >&2; exit 1; }
fi
# Each archive is the package and version it is named for.
while read -r p v _; do
  got="$(dpkg-deb -f "${files[$p]}" Package Version 2>/dev/null | tr '\n' ' ')"
  [ "$got" = "Package: $p Version: $v " ] || {
    echo "build-image: ${files[$p]} is not $p $v (it says: $got)" >&2; rm -f "${files[$p]}"; exit 1; }
done <"$out/packages.txt"
log "$(wc -l <"$out/packages.txt") Debian packages ($arch): $(cut -d' ' -f1 "$out/packages.txt" | tr '\n' ' ')"

# --- 3. the root filesystem ---
work="$(mktemp -d "${TMPDIR:-/tmp}/flexpu-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/var/lib/dpkg/status.d"
for p in "${!files[@]}"; do
  dpkg-deb -x "${files[$p]}" "$rootfs"
  # The package's control file, "installed": what a scanner reads.
  { dpkg-deb -f "${files[$p]}"; echo "Status: install ok installed"; } \
    >"$rootfs/var/lib/dpkg/status.d/$p"
done
# Only the shared libraries, the loader and what they read are needed: no
# documentation besides the copyright files, no package scripts.
find "$rootfs/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
rm -rf "$rootfs/usr/share/man" "$rootfs/usr/share/lintian" "$rootfs/usr/share/locale" \
       "$rootfs/usr/share/info" "$rootfs/usr/sbin" "$rootfs/sbin" "$rootfs/usr/bin"
# update-ca-certificates' bundle, made as it makes it.
if [ -d "$rootfs/usr/share/ca-certificates" ]; then
  mkdir -p "$rootfs/etc/ssl/certs"
  find "$rootfs/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort |
    xargs cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
install -D -m 0755 "$build/flexpu-scheduler" "$rootfs/usr/bin/flexpu-scheduler"
install -D -m 0755 "$build/flexpu-node" "$rootfs/usr/bin/flexpu-node"
install -D -m 0755 "$build/flexpu-smi" "$rootfs/usr/bin/flexpu-smi"
install -D -m 0755 "$build/libflexpu-cuda.so" "$rootfs/usr/lib/flexpu/libflexpu-cuda.so"
install -D -m 0755 "$build/flexpu-remoted" "$rootfs/usr/bin/flexpu-remoted"
# The remote client, copied by flexpu-node --remote-client-dir into the
# host's <root>/remote-lib for remote pods' containers; not in ld.so.conf:
# nothing in the image loads it.
install -D -m 0755 "$build/remote/libcudart.so.12" "$rootfs/usr/lib/flexpu/remote/libcudart.so.12"
install -D -m 0755 "$build/remote/libcublas.so.12" "$rootfs/usr/lib/flexpu/remote/libcublas.so.12"
strip --strip-unneeded "$rootfs/usr/bin/"flexpu-* "$rootfs/usr/lib/flexpu/libflexpu-cuda.so" \
  "$rootfs/usr/lib/flexpu/remote/"lib*.so.12
mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/home/nonroot"
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
printf 'include /etc/ld.so.conf.d/*.conf\n' >"$rootfs/etc/ld.so.conf"
ldconfig -r "$rootfs"
cp "$out/packages.txt" "$rootfs/usr/lib/flexpu/packages.txt"
# One timestamp for every file (the last commit's), so that the layers
# depend on the content only.
epoch="$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)"
find "$rootfs" -exec touch -h -d "@$epoch" {} +
log "root filesystem: $(du -sh "$rootfs" | cut -f1)"

# --- 4. the OCI image ---
oci="$out/oci"
rm -rf "$oci" "$work/bundle"
umoci init --layout "$oci"
umoci new --image "$oci:$tag"
umoci unpack --rootless --image "$oci:$tag" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$oci:$tag" --history.created_by "scripts/build-image.sh" \
  --history.comment "flexpu binaries and $(wc -l <"$out/packages.txt") Debian packages" \
  "$work/bundle"
rev="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
umoci config --image "$oci:$tag" --created "$created" --author flexpu \
  --os linux --architecture "$arch" \
  --config.user 65532:65532 --config.workingdir / \
  --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.cmd /usr/bin/flexpu-scheduler \
  --config.label org.opencontainers.image.title=flexpu \
  --config.label org.opencontainers.image.revision="$rev" \
  --config.label org.opencontainers.image.version="$tag" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --manifest.annotation org.opencontainers.image.revision="$rev" \
  --history.created_by "umoci config (user 65532)"
umoci gc --layout "$oci"
archive="$out/flexpu-$tag.oci.tar"
tar -C "$oci" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
log "wrote $oci (tag $tag) and $archive ($(du -h "$archive" | cut -f1))"
