#!/usr/bin/env bash
# Builds the Kubernetes CSI sidecars from their Go modules: external-provisioner (csi-provisioner)
# and external-snapshotter (csi-snapshotter, snapshot-controller), as static binaries into BINDIR,
# and copies the snapshot CRDs to build/snapshot-crds/. `go install module@version` refuses these
# modules because their go.mod carries replace directives, so each module is downloaded through the
# Go module proxy and built as the main module, where those directives apply.
#
# Versions come from the Makefile (PROVISIONER_VERSION, SNAPSHOTTER_VERSION); the defaults below
# are only for running the script by hand. Not obtainable from the module proxy, and so not built:
# node-driver-registrar, external-resizer and livenessprobe (their v2+ tags live at module paths
# without the /vN suffix, which the proxy refuses to serve).
#
#   csi-sidecars.sh BINDIR [BINARY...]    (no BINARY: all of them)
set -euo pipefail
out=${1:?usage: csi-sidecars.sh BINDIR [BINARY...]}
shift
wanted=("$@")
PROVISIONER_VERSION=${PROVISIONER_VERSION:-v6.3.0}
SNAPSHOTTER_VERSION=${SNAPSHOTTER_VERSION:-v8.7.0}
root=$(cd "$(dirname "$0")/.." && pwd)
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$out"

module_dir() {  # module version -> its directory in the module cache
  (cd /tmp && go mod download -json "$1@$2") | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}
want() {
  [ ${#wanted[@]} -eq 0 ] && return 0
  local w
  for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}
build() {  # module version package binary [nested-module-dir nested-module-path]
  local module=$1 version=$2 package=$3 binary=$4 nested=${5:-} nested_module=${6:-}
  want "$binary" || return 0
  local src work
  src=$(module_dir "$module" "$version")
  work=$(mktemp -d)
  cp -r "$src/." "$work/"
  if [ -n "$nested" ]; then
    # A module zip leaves out nested modules its go.mod replaces with a local path (`=> ./client`):
    # put the same version of that module back where the directive points.
    rm -rf "${work:?}/$nested"
    cp -r "$(module_dir "$nested_module" "$version")/." "$work/$nested/"
  fi
  chmod -R u+w "$work"
  (cd "$work" && go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/$binary" "./$package")
  rm -rf "$work"
  echo "$binary $version -> $out/$binary"
}

# v6.4.0 needs sig-storage-lib-external-provisioner v13.1.0, which the module proxy does not serve.
build github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION" cmd/csi-provisioner csi-provisioner
snapshotter=github.com/kubernetes-csi/external-snapshotter
build "$snapshotter/v8" "$SNAPSHOTTER_VERSION" cmd/csi-snapshotter csi-snapshotter client "$snapshotter/client/v8"
build "$snapshotter/v8" "$SNAPSHOTTER_VERSION" cmd/snapshot-controller snapshot-controller client "$snapshotter/client/v8"

if want snapshot-controller || want csi-snapshotter; then
  # The VolumeSnapshot CRDs of the same release (the snapshot-controller and the tests need them).
  crds="$root/build/snapshot-crds"
  rm -rf "$crds" && mkdir -p "$crds"
  install -m 0644 "$(module_dir "$snapshotter/client/v8" "$SNAPSHOTTER_VERSION")"/config/crd/*snapshot.storage.k8s.io_*.yaml "$crds/"
  echo "snapshot CRDs $SNAPSHOTTER_VERSION -> $crds"
fi
