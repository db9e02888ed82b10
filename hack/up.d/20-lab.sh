# The simulated rack that docs/examples/ point at: one RouterOS/RDS simulator on fixed ports (the
# `core` and `rds1` Routers), a web server with a demo ISO (ISOCDROM by URL), an ISO already on the
# RDS (ISOCDROM by path) and an external registry with its own CA. Everything listens on LAB_HOST,
# the host end of the node's veth (15-node.sh): the one host address the operators' Pods can reach.
# The examples name 127.0.0.1; `make up` applies them with LAB_HOST in its place.
LAB=$RUN/lab
LAB_HOST=${LAB_HOST:-$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["host_ip"])' "$RUN/node/node.json")}
export LAB_HOST
EXAMPLES_NS=trellis-examples
mkdir -p "$LAB/www" "$LAB/registry/data"
kubectl create namespace "$EXAMPLES_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
secret() { # NAME ARGS... — create or update a Secret in the examples namespace
  local name=$1; shift
  kubectl -n "$EXAMPLES_NS" create secret generic "$name" "$@" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

if ! alive lab-rack; then rm -f "$LAB/rack/ready.json"; fi
start lab-rack python -m rossim --data-dir "$LAB/rack" --host "$LAB_HOST" --api-port 18728 --api-tls-port 18729 \
  --ssh-port 12222 --control-port 18780 --user trellis:change-me:full
for _ in $(seq 1 120); do [ -f "$LAB/rack/ready.json" ] && break; sleep 0.25; done
[ -f "$LAB/rack/ready.json" ] || { echo "rack simulator did not start; see .run/logs/lab-rack.log" >&2; exit 1; }
ready_field() { python -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$LAB/rack/ready.json" "$1"; }
secret lab-known-hosts --from-literal=known_hosts="$(ready_field known_hosts)"
secret router-core-ca --from-file=ca.crt="$(ready_field tls_cert)"

mkdir -p "$LAB/rack/files/storage-pool/iso"
[ -f "$LAB/rack/files/storage-pool/iso/systemrescue-11.03-amd64.iso" ] || \
  bash hack/lab-iso.sh "$LAB/rack/files/storage-pool/iso/systemrescue-11.03-amd64.iso"
[ -f "$LAB/www/metal-amd64.iso" ] || bash hack/lab-iso.sh "$LAB/www/metal-amd64.iso"
start lab-www python -m http.server 18090 --bind "$LAB_HOST" --directory "$LAB/www"

# The "external" registry: the real CNCF registry binary with TLS from a lab CA.
if [ ! -f "$LAB/registry/tls.crt" ] || ! grep -qx "$LAB_HOST" "$LAB/registry/host" 2>/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=trellis lab CA" \
    -keyout "$LAB/registry/ca.key" -out "$LAB/registry/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$LAB/registry/tls.key" -out "$LAB/registry/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:%s,DNS:localhost\n' "$LAB_HOST" > "$LAB/registry/san.ext"
  openssl x509 -req -in "$LAB/registry/tls.csr" -CA "$LAB/registry/ca.crt" -CAkey "$LAB/registry/ca.key" \
    -CAcreateserial -days 3650 -extfile "$LAB/registry/san.ext" -out "$LAB/registry/tls.crt" 2>/dev/null
  echo "$LAB_HOST" > "$LAB/registry/host"
fi
cat > "$LAB/registry/config.yml" <<YAML
version: 0.1
storage:
  filesystem: {rootdirectory: $LAB/registry/data}
http:
  addr: $LAB_HOST:15443
  tls: {certificate: $LAB/registry/tls.crt, key: $LAB/registry/tls.key}
YAML
start lab-registry docker-registry serve "$LAB/registry/config.yml"
# A plain-HTTP registry for the managed Registry example to cache (its proxy upstream).
mkdir -p "$LAB/upstream/data"
cat > "$LAB/upstream/config.yml" <<YAML
version: 0.1
storage:
  filesystem: {rootdirectory: $LAB/upstream/data}
http:
  addr: $LAB_HOST:15000
YAML
start lab-upstream docker-registry serve "$LAB/upstream/config.yml"
secret harbor-ca --from-file=ca.crt="$LAB/registry/ca.crt"
echo "  rack simulator: API $LAB_HOST:18728 (TLS :18729), SSH :12222, control :18780; ISO web :18090; registries :15443 (TLS), :15000"
