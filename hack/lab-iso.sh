#!/usr/bin/env bash
# Builds the small demo ISO the lab serves. Fixed content, timestamps and volume date make it
# byte-for-byte reproducible, so docs/examples/isocdrom-talos.yaml can carry its sha256.
set -euo pipefail
out=${1:?usage: lab-iso.sh OUTPUT.iso}
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
printf 'Trellis lab demo image: stands in for an installer ISO in `make up`.\n' > "$src/README.TXT"
touch -d @1700000000 "$src/README.TXT" "$src"
SOURCE_DATE_EPOCH=1700000000 xorriso -as mkisofs -quiet -V TRELLIS_DEMO -o "$out.tmp" "$src" 2>/dev/null
mv "$out.tmp" "$out"
