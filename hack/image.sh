#!/usr/bin/env bash
# `make image`: builds every container image the chart uses and writes each as an OCI archive.
#
#   trellis              Containerfile             (operators, boot service, CSI plugin)
#   dnsmasq              images/dnsmasq/Containerfile
#   csi-provisioner      images/sidecars/Containerfile --target csi-provisioner
#   csi-snapshotter      images/sidecars/Containerfile --target csi-snapshotter
#   snapshot-controller  images/sidecars/Containerfile --target snapshot-controller
#
# Output (format documented in docs/development.md, kept stable): build/images/<name>.tar (an OCI
# archive whose one ref is the image's first reference) and build/images/images.json.
#
# Tags: trellis and dnsmasq get <appVersion> (charts/trellis/Chart.yaml) and, unless HEAD is the
# release tag v<appVersion>, also <appVersion>-g<shortrev>[-dirty]; the sidecars get their upstream
# version. Each image is cached outside the clone under a hash of all its inputs (Containerfile,
# base image ID, context, build args): unchanged inputs skip the build.
#
# Environment (the Makefile passes the versions):
#   IMAGE_REGISTRY        repository prefix (default ghcr.io/trellis-dev)
#   IMAGE_BASE            base of the trellis and dnsmasq builders; default: a Debian bookworm base
#                         made here with debootstrap (no public registry is needed). With network:
#                         IMAGE_BASE=docker.io/library/python:3.11-slim-bookworm
#   IMAGE_TOOL            buildah (default) or podman
#   IMAGE_STORAGE_DRIVER  default vfs (works anywhere, also nested); empty: the tool's own setting
#   IMAGE_ISOLATION       default chroot (no runc needed); empty: the tool's own setting
#   IMAGES                space-separated subset of the names above (default: all)
#   TRELLIS_CACHE         default ${XDG_CACHE_HOME:-$HOME/.cache}/trellis
#   PY                    Python 3.11 with pip for the wheelhouse (default .venv/bin/python)
#   BIN                   where the sidecar binaries are (default bin/)
#   PROVISIONER_VERSION SNAPSHOTTER_VERSION
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

REGISTRY=${IMAGE_REGISTRY:-ghcr.io/trellis-dev}
TOOL=${IMAGE_TOOL:-$(command -v buildah >/dev/null && echo buildah || echo podman)}
STORAGE_DRIVER=${IMAGE_STORAGE_DRIVER-vfs}
ISOLATION=${IMAGE_ISOLATION-chroot}
CACHE=${TRELLIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trellis}
PY=${PY:-.venv/bin/python}
BIN=${BIN:-bin}
OUT=build/images
PROVISIONER_VERSION=${PROVISIONER_VERSION:?set by the Makefile}
SNAPSHOTTER_VERSION=${SNAPSHOTTER_VERSION:?set by the Makefile}
ALL="trellis dnsmasq csi-provisioner csi-snapshotter snapshot-controller"
IMAGES=${IMAGES:-$ALL}
# Budgets in MB (uncompressed, as `docker images` shows them).
declare -A BUDGET=([trellis]=250 [dnsmasq]=60 [csi-provisioner]=100 [csi-snapshotter]=100 [snapshot-controller]=100)

command -v "$TOOL" >/dev/null || { echo "image: neither buildah nor podman is installed (make sysdeps)" >&2; exit 1; }
tool() {
  local flags=()
  [ -n "$STORAGE_DRIVER" ] && flags+=(--storage-driver "$STORAGE_DRIVER")
  "$TOOL" "${flags[@]}" "$@"
}
build_flags=()
[ -n "$ISOLATION" ] && build_flags+=(--isolation "$ISOLATION")
log() { printf '%s image: %s\n' "$(date +%T)" "$*" >&2; }
sha() { sha256sum | cut -c1-64; }

# --- version, tags, labels ----------------------------------------------------------------------
APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/trellis/Chart.yaml)
[ -n "$APP_VERSION" ] || { echo "image: no appVersion in charts/trellis/Chart.yaml" >&2; exit 1; }
REVISION=unknown
DEV_TAG=""
if git rev-parse --git-dir >/dev/null 2>&1; then
  REVISION=$(git rev-parse HEAD)
  dirty=""
  git diff --quiet HEAD -- 2>/dev/null || dirty="-dirty"
  if [ "$(git describe --exact-match --tags HEAD 2>/dev/null || true)" != "v$APP_VERSION" ] || [ -n "$dirty" ]; then
    DEV_TAG="$APP_VERSION-g$(git rev-parse --short=12 HEAD)$dirty"
  fi
fi
SOURCE=https://github.com/trellis-dev/trellis
label_args=(--build-arg "REVISION=$REVISION" --build-arg "SOURCE=$SOURCE")

# --- the base: IMAGE_BASE, or a debootstrap'ed Debian bookworm with python3 ---------------------
# The rootfs recipe; its text is part of the cache key, so editing it makes a new base.
base_rootfs() {  # DIR
  local dir=$1 mirror=http://deb.debian.org/debian
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$dir" "$mirror" >&2
  cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # As debian:bookworm-slim: no docs, man pages or translations, then or later.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    >"$dir/etc/dpkg/dpkg.cfg.d/docker"
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$dir"/usr/share/{man,info,locale}/* "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* \
    "$dir"/var/cache/debconf/*-old "$dir"/var/log/* "$dir"/tmp/* "$dir"/root/.[!.]*
  # Nothing of the host that ran debootstrap: the runtime provides these.
  rm -f "$dir"/etc/resolv.conf "$dir"/etc/hostname "$dir"/etc/hosts "$dir"/etc/machine-id
  : >"$dir/etc/machine-id"
}
local_base() {
  local key ref tarball rootfs ctr
  key=$(declare -f base_rootfs | sha | cut -c1-12)
  ref=localhost/trellis-base:bookworm-$key
  if tool inspect --type image "$ref" >/dev/null 2>&1; then echo "$ref"; return; fi
  tarball=$CACHE/base/bookworm-$key.tar
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "image: debootstrap is missing (make sysdeps)" >&2; exit 1; }
    log "debootstrap Debian bookworm base ($key) -> $tarball"
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/trellis-base.XXXXXX")
    mkdir -p "$CACHE/base"
    base_rootfs "$rootfs" >"$CACHE/base/debootstrap.log" 2>&1 \
      || { tail -n 30 "$CACHE/base/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
    mkdir -p "$CACHE/base"
    tar -C "$rootfs" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  log "importing $tarball as $ref"
  ctr=$(tool from scratch)
  tool add "$ctr" "$tarball" / >/dev/null
  tool config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["/usr/bin/python3"]' --label "org.opencontainers.image.title=trellis-base" \
    --label "org.opencontainers.image.description=Debian bookworm minbase with python3 (debootstrap)" "$ctr"
  tool commit --quiet --rm "$ctr" "$ref" >/dev/null
  echo "$ref"
}
base_id() {  # REF -> image ID (pulled when missing)
  tool inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null && return
  tool pull --quiet "$1" >/dev/null
  tool inspect --type image --format '{{.FromImageID}}' "$1"
}

# --- the wheelhouse: dependencies cached by pyproject.toml, the Trellis wheel built every time ----
wheelhouse() {  # -> build/wheelhouse with exactly the wheels the image installs
  local deps_key deps_dir stage whl=build/wheelhouse
  [ -f csi/_gen/csi_pb2.py ] || { echo "image: CSI stubs missing: run make tools" >&2; exit 1; }
  [ -f operators/talosdevice/_gen/machine_pb2.py ] || { echo "image: Talos API stubs missing: run make tools" >&2; exit 1; }
  # Binary wheels are for one Python minor: the base's (Debian bookworm: 3.11).
  "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "image: $PY is not Python 3.11, the base image's Python: set PY" >&2; exit 1; }
  deps_key=$({ "$PY" -c 'import sys, sysconfig; print(sys.version_info[:2], sysconfig.get_platform())'
    "$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))'
  } | sha | cut -c1-16)
  deps_dir=$CACHE/wheels/$deps_key
  if [ ! -f "$deps_dir/.complete" ]; then
    log "dependency wheels ($deps_key) -> $deps_dir"
    mkdir -p "$deps_dir"
    "$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      >"$deps_dir/requirements.txt"
    "$PY" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$deps_dir" -r "$deps_dir/requirements.txt"
    touch "$deps_dir/.complete"
  fi
  # The Trellis wheel from a copy of the tracked (and new, not ignored) files plus the generated
  # stubs: nothing else of the work tree (build/, .venv, caches) can end up in it.
  stage=$(mktemp -d "${TMPDIR:-/tmp}/trellis-wheel.XXXXXX")
  { git ls-files -z --cached --others --exclude-standard 2>/dev/null || find . -path ./.git -prune -o -type f -print0
  } | while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -C "$stage" -xf -
  mkdir -p "$stage/csi/_gen" && cp csi/_gen/*.py "$stage/csi/_gen/"
  mkdir -p "$stage/operators/talosdevice/_gen" && cp operators/talosdevice/_gen/*.py "$stage/operators/talosdevice/_gen/"
  rm -rf "$whl" && mkdir -p "$whl"
  # Fixed timestamps: the same sources give the same wheel, so the image's cache key holds.
  SOURCE_DATE_EPOCH=315532800 \
    "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation --wheel-dir "$whl" \
    "$stage" >"$stage.log" 2>&1 || { cat "$stage.log" >&2; exit 1; }
  rm -f "$stage.log"
  rm -rf "$stage"
  "$PY" hack/check_wheel.py "$whl"/trellis-*.whl >&2
  # Only the wheels the Trellis wheel needs (the cache may hold others from older pyprojects).
  find "$deps_dir" -name '*.whl' -exec ln -f {} "$whl/" \; 2>/dev/null || cp "$deps_dir"/*.whl "$whl/"
}

# --- one image -------------------------------------------------------------------------------------
declare -A RESULT
build_image() {  # NAME CONTAINERFILE CONTEXT TARGET BASE TAG...
  local name=$1 file=$2 context=$3 target=$4 base=$5
  shift 5
  local tags=("$@") refs=() args=() key entry archive summary t
  for t in "${tags[@]}"; do refs+=("$REGISTRY/$name:$t"); done
  args=("${label_args[@]}" --build-arg "VERSION=${tags[-1]}")
  [ -n "$base" ] && args+=(--build-arg "BASE=$base")
  [ -n "$target" ] && args+=(--target "$target")
  key=$({
    echo "$name ${refs[*]} ${args[*]}"
    [ -n "$base" ] && base_id "$base"
    cat "$file"
    (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha)
  entry=$CACHE/images/$name-${key:0:24}
  archive=$OUT/$name.tar
  if [ -f "$entry/summary.json" ] && [ -f "$entry/image.tar" ]; then
    log "$name: unchanged (${key:0:12}), from the cache"
  else
    log "$name: building ${refs[0]}"
    local started=$SECONDS
    tool bud "${build_flags[@]}" --quiet --layers=false -f "$file" "${args[@]}" \
      $(for r in "${refs[@]}"; do printf -- '-t %s ' "$r"; done) "$context" >/dev/null
    mkdir -p "$entry"
    rm -f "$entry/image.tar.part"
    tool push --quiet "${refs[0]}" "oci-archive:$entry/image.tar.part:${refs[0]}"
    mv "$entry/image.tar.part" "$entry/image.tar"
    # The archive is the product; the copy in local storage (a full copy per layer with vfs) is not kept.
    tool rmi "${refs[@]}" >/dev/null 2>&1 || true
    python3 hack/ociarchive.py summary "$entry/image.tar" >"$entry/summary.json.part"
    mv "$entry/summary.json.part" "$entry/summary.json"
    log "$name: built in $((SECONDS - started)) s"
    # Keep the three newest builds of each image in the cache.
    ls -1dt "$CACHE/images/$name"-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
  fi
  rm -f "$archive"
  ln "$entry/image.tar" "$archive" 2>/dev/null || cp "$entry/image.tar" "$archive"
  summary=$(cat "$entry/summary.json")
  RESULT[$name]=$(python3 - "$name" "$archive" "$file" "$summary" "${refs[@]}" <<'EOF'
import json, os, sys
name, archive, file, summary, *refs = sys.argv[1:]
s = json.loads(summary)
print(json.dumps({
    "name": name,
    "references": refs,
    "archive": archive,
    "digest": s["digest"],
    "size": s["size"],
    "compressed_size": s["compressed_size"],
    "archive_size": os.path.getsize(archive),
    "user": s["user"],
    "containerfile": file,
}))
EOF
)
}

wanted() { [[ " $IMAGES " == *" $1 "* ]]; }
mkdir -p "$OUT" "$CACHE"
app_tags=("$APP_VERSION")
[ -n "$DEV_TAG" ] && app_tags+=("$DEV_TAG")

base=${IMAGE_BASE:-}
if { wanted trellis || wanted dnsmasq; } && [ -z "$base" ]; then
  base=$(local_base)
fi
if wanted trellis; then
  wheelhouse
  build_image trellis Containerfile build/wheelhouse "" "$base" "${app_tags[@]}"
fi
if wanted dnsmasq; then
  build_image dnsmasq images/dnsmasq/Containerfile images/dnsmasq "" "$base" "${app_tags[@]}"
fi
sidecar_ctx=build/sidecars
rm -rf "$sidecar_ctx" && mkdir -p "$sidecar_ctx"
for sidecar in csi-provisioner:$PROVISIONER_VERSION csi-snapshotter:$SNAPSHOTTER_VERSION \
  snapshot-controller:$SNAPSHOTTER_VERSION; do
  name=${sidecar%%:*} version=${sidecar#*:}
  wanted "$name" || continue
  [ -x "$BIN/$name" ] || { echo "image: $BIN/$name missing (make $BIN/$name)" >&2; exit 1; }
  mkdir -p "$sidecar_ctx/$name"
  cp "$BIN/$name" "$sidecar_ctx/$name/"
  build_image "$name" images/sidecars/Containerfile "$sidecar_ctx/$name" "$name" "" "$version"
done

# --- images.json and the size table ------------------------------------------------------------------
{
  printf '{\n  "version": 1,\n  "appVersion": "%s",\n  "revision": "%s",\n  "images": [\n' "$APP_VERSION" "$REVISION"
  first=1
  for name in $ALL; do
    [ -n "${RESULT[$name]:-}" ] || continue
    [ $first = 1 ] || printf ',\n'
    printf '    %s' "${RESULT[$name]}"
    first=0
  done
  printf '\n  ]\n}\n'
} >"$OUT/images.json.part"
python3 -m json.tool "$OUT/images.json.part" >"$OUT/images.json"
rm -f "$OUT/images.json.part"

over=0
printf '\n%-20s %10s %10s %8s  %s\n' IMAGE "SIZE MB" "GZIP MB" BUDGET REFERENCE
for name in $ALL; do
  [ -n "${RESULT[$name]:-}" ] || continue
  read -r size gz ref < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["size"], d["compressed_size"], d["references"][0])' "${RESULT[$name]}")
  mb=$(awk -v s="$size" 'BEGIN{printf "%.1f", s/1e6}')
  status=ok
  awk -v s="$size" -v b="${BUDGET[$name]}" 'BEGIN{exit !(s/1e6 > b)}' && { status=OVER; over=1; }
  printf '%-20s %10s %10s %6s %s  %s\n' "$name" "$mb" "$(awk -v s="$gz" 'BEGIN{printf "%.1f", s/1e6}')" \
    "${BUDGET[$name]}" "$status" "$ref"
done
echo "images: $OUT/images.json"
[ "$over" = 0 ] || echo "image: WARNING: over the size budget" >&2
