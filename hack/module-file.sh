#!/usr/bin/env bash
# Copies one file out of a Go module fetched through the Go module proxy: how the API definitions
# the Python code is generated from (csi.proto, kubelet's plugin registration api.proto) get here
# at build time, never committed.
#
#   module-file.sh MODULE@VERSION PATH/IN/MODULE DESTINATION
set -euo pipefail
usage="usage: module-file.sh MODULE@VERSION PATH/IN/MODULE DESTINATION"
module=${1:?$usage}
path=${2:?$usage}
dest=${3:?$usage}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
dir=$(cd /tmp && go mod download -json "$module" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$(dirname "$dest")"
install -m 0644 "$dir/$path" "$dest"
echo "$module $path -> $dest"
