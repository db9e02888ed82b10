#!/usr/bin/env bash
# `make up`: the whole Trellis suite on this machine — a real control plane, the device
# simulators, every operator and the CSI driver, with docs/examples applied.
# Idempotent: whatever is already running is kept; `make down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RUN=$REPO/.run
LOGS=$RUN/logs
export PATH=$REPO/bin:$REPO/.venv/bin:$PATH
export PYTHONPATH=$REPO:$REPO/hack${PYTHONPATH:+:$PYTHONPATH}
export KUBECONFIG=$RUN/testenv/kubeconfig
mkdir -p "$LOGS"

# shellcheck source=hack/up-lib.sh
source hack/up-lib.sh

down() {
  # The virtual machines first: their network lives in the node's namespace.
  if alive rack; then kill -TERM "$(cat "$RUN/rack.pid")"; for _ in $(seq 1 120); do alive rack || break; sleep 0.5; done; fi
  # The node next, while the apiserver can still drain it (unmounts, Node object).
  if [ -e "$RUN/node/state.json" ]; then python -m labnode down --dir "$RUN/node" || true; fi
  stop_all
}

status() {
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || { echo "nothing running"; return 0; }
    name=$(basename "$pidfile" .pid)
    if alive "$name"; then echo "$name: running"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  --down) down; exit 0 ;;
  --status) status; exit 0 ;;
esac

echo "control plane"
if ! alive testenv; then rm -f "$RUN/testenv/ready.json"; fi
# One apiserver port for the life of .run: etcd keeps the `kubernetes` Service's endpoint across
# `make down`/`make up`, and Pods reach the apiserver through it.
[ -s "$RUN/apiserver.port" ] || python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' > "$RUN/apiserver.port"
start testenv bin/trellis-testenv up --dir "$RUN/testenv" --port "$(cat "$RUN/apiserver.port")"
deadline=$((SECONDS + 240))
until [ -f "$RUN/testenv/ready.json" ]; do
  alive testenv || { echo "control plane failed; see .run/logs/testenv.log and .run/testenv/*.log" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "control plane not ready after 240s" >&2; exit 1; }
  sleep 0.5
done
kubectl version 2>/dev/null | sed 's/^/  /'

echo "CRDs"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=trellis >/dev/null
echo "  $(ls crds/*.yaml | wc -l) CRDs established"

# Components register themselves with a script in hack/up.d/ (sourced in name order); each uses
# `start NAME COMMAND...` and may apply objects that wire it to the simulators.
for part in hack/up.d/*.sh; do
  [ -e "$part" ] || continue
  echo "$(basename "$part" .sh)"
  # shellcheck source=/dev/null
  source "$part"
done

echo "examples"
kubectl create namespace trellis-examples --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The examples name 127.0.0.1 for the lab devices; here they listen on LAB_HOST (20-lab.sh).
for f in docs/examples/*.yaml; do
  [ -e "$f" ] || continue
  sed "s/127\.0\.0\.1/$LAB_HOST/g" "$f" | kubectl apply -n trellis-examples -f - >/dev/null && echo "  applied $f"
done

cat <<TXT

Trellis is up. Reach it with:
  export KUBECONFIG=$KUBECONFIG PATH=$REPO/bin:\$PATH
  kubectl get trellis -A
Logs: .run/logs/   Stop: make down
TXT
