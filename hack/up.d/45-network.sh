# Network operator: a RouterOS simulator standing in for the core router, a Router "sim-core"
# pointing at it and a small demo Network with one reservation (docs/network.md).
NET_RUN=$RUN/network
mkdir -p "$NET_RUN"
[ -f "$NET_RUN/password" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$NET_RUN/password"
if ! alive network-router; then rm -f "$NET_RUN/router/ready.json"; fi
start network-router python -m rossim --data-dir "$NET_RUN/router" --api-port 0 --ssh-port off \
  --control-port 0 --user "trellis:$(cat "$NET_RUN/password"):full"
for _ in $(seq 1 120); do [ -f "$NET_RUN/router/ready.json" ] && break; sleep 0.25; done
net_api_port=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_port"])' "$NET_RUN/router/ready.json")
kubectl create namespace trellis-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
metadata: {name: sim-core-credentials, namespace: trellis-system}
stringData: {username: trellis, password: "$(cat "$NET_RUN/password")"}
---
apiVersion: trellis.dev/v1alpha1
kind: Router
metadata: {name: sim-core}
spec:
  address: 127.0.0.1
  apiPort: $net_api_port
  credentialsSecretRef: {name: sim-core-credentials, namespace: trellis-system}
  probeIntervalSeconds: 30
---
apiVersion: trellis.dev/v1alpha1
kind: Network
metadata: {name: sim-lab}
spec:
  cidr: 10.199.0.0/24
  gateway: 10.199.0.1
  router: sim-core
  interface: ether2
  dhcp:
    server: router
    range: {start: 10.199.0.100, end: 10.199.0.199}
    domain: sim-lab.example
    pxe: {bootFile: undionly.kpxe}
YAML
kubectl create namespace trellis-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n trellis-demo -f - >/dev/null <<YAML
apiVersion: trellis.dev/v1alpha1
kind: DHCPReservation
metadata: {name: demo-node}
spec: {networkRef: sim-lab, mac: "52:54:00:19:90:01", hostname: demo-node}
YAML
echo "  Router sim-core -> RouterOS API simulator on 127.0.0.1:$net_api_port; Network sim-lab (kubectl get net,dhcpr -A)"
