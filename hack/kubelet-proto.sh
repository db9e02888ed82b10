#!/usr/bin/env bash
# Copies kubelet's plugin registration API (pluginregistration/v1/api.proto of the k8s.io/kubelet Go
# module, fetched through the Go module proxy) as pluginregistration.proto, so the CSI node plugin's
# Registration service stubs are generated at build time, never committed. VERSION is the module's
# (v0.X.Y for Kubernetes v1.X.Y).
set -euo pipefail
version=${1:?usage: kubelet-proto.sh VERSION OUTDIR}
out=${2:?usage: kubelet-proto.sh VERSION OUTDIR}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
dir=$(cd /tmp && go mod download -json "k8s.io/kubelet@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$out"
install -m 0644 "$dir/pkg/apis/pluginregistration/v1/api.proto" "$out/pluginregistration.proto"
echo "pluginregistration api.proto k8s.io/kubelet@$version -> $out/pluginregistration.proto"
