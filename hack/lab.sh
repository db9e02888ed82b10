#!/usr/bin/env bash
# The simulated rack that docs/examples/ point at, on its own: the RouterOS/RDS simulator, the ISO
# web server, the registries (hack/up.d/20-lab.sh) and the BMC emulators (55-baremetalhost.sh),
# listening on HOST with the fixed ports the examples name. `make up` starts it on its node's
# host address; the release tests start one on their session node's.
#
#   hack/lab.sh up RUN_DIR HOST     (KUBECONFIG: the cluster that gets the lab's Secrets)
#   hack/lab.sh down RUN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
command=${1:?usage: lab.sh up RUN_DIR HOST | down RUN_DIR}
RUN=$(mkdir -p "${2:?run dir}" && cd "$2" && pwd)
LOGS=$RUN/logs
export PATH=$REPO/bin:$REPO/.venv/bin:$PATH
export PYTHONPATH=$REPO:$REPO/hack${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$LOGS"
# shellcheck source=hack/up-lib.sh
source hack/up-lib.sh
case "$command" in
  up)
    export LAB_HOST=${3:?host address}
    # shellcheck source=/dev/null
    source hack/up.d/20-lab.sh
    # shellcheck source=/dev/null
    source hack/up.d/55-baremetalhost.sh
    ;;
  down) stop_all ;;
  *) echo "usage: lab.sh up RUN_DIR HOST | down RUN_DIR" >&2; exit 2 ;;
esac
