#!/usr/bin/env bash
# Copies csi.proto from the container-storage-interface/spec Go module (fetched through the Go
# module proxy) so the CSI driver's Python stubs are generated at build time, never committed.
set -euo pipefail
version=${1:?usage: csi-proto.sh VERSION OUTDIR}
out=${2:?usage: csi-proto.sh VERSION OUTDIR}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
dir=$(cd /tmp && go mod download -json "github.com/container-storage-interface/spec@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$out"
install -m 0644 "$dir/csi.proto" "$out/csi.proto"
echo "csi.proto $version -> $out/csi.proto"
