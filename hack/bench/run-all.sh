#!/usr/bin/env bash
# Runs every benchmark under hack/bench/; each prints its figures and writes build/bench/<name>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PWD/bin:$PWD/.venv/bin:$PATH PYTHONPATH=$PWD:$PWD/hack
mkdir -p build/bench
status=0
for bench in hack/bench/*.py; do
  [ -e "$bench" ] || continue
  echo "== $bench"
  python "$bench" || { echo "benchmark failed: $bench" >&2; status=1; }
done
echo "results: $(ls build/bench/*.json 2>/dev/null | tr '\n' ' ')"
exit $status
