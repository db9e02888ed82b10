#!/usr/bin/env bash
# Builds the Kubernetes CSI sidecars the end-to-end tests run (external-provisioner) from their Go
# modules. `go install module@version` refuses them because their go.mod carries replace
# directives, so the module is downloaded through the Go module proxy and built as the main
# module, where those directives apply.
set -euo pipefail
out=${1:?usage: csi-sidecars.sh BINDIR}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
build() {  # module version package binary
  local module=$1 version=$2 package=$3 binary=$4
  local src work
  src=$(cd /tmp && go mod download -json "$module@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  (cd "$work" && go build -trimpath -o "$out/$binary" "./$package")
  rm -rf "$work"
  echo "$binary $version -> $out/$binary"
}
# v6.4.0 needs sig-storage-lib-external-provisioner v13.1.0, which the module proxy does not serve.
build github.com/kubernetes-csi/external-provisioner/v6 v6.3.0 cmd/csi-provisioner csi-provisioner
