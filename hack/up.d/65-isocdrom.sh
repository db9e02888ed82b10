# ISOCDROM operator: an RDS simulator, a small ISO built with xorriso and served over HTTP on LAB_HOST,
# a Router "sim-rds" and an ISOCDROM "demo-iso" that ends up exported over iSCSI (docs/isocdrom.md).
ISO_RUN=$RUN/isocdrom
mkdir -p "$ISO_RUN/www"
[ -f "$ISO_RUN/password" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ISO_RUN/password"
if [ ! -f "$ISO_RUN/www/demo.iso" ]; then
  mkdir -p "$ISO_RUN/content"
  echo "Trellis demo image" > "$ISO_RUN/content/README.TXT"
  xorriso -as mkisofs -quiet -V TRELLIS_DEMO -o "$ISO_RUN/www/demo.iso" "$ISO_RUN/content" 2>/dev/null
fi
if ! alive isocdrom-rds; then rm -f "$ISO_RUN/rds/ready.json"; fi
start isocdrom-rds python -m rossim --data-dir "$ISO_RUN/rds" --host "$LAB_HOST" --api-port off --ssh-port 0 --control-port 0 \
  --user "trellis:$(cat "$ISO_RUN/password"):full" --pool-size 8G
[ -f "$ISO_RUN/http.port" ] || python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' > "$ISO_RUN/http.port"
start isocdrom-http python -m http.server --bind "$LAB_HOST" --directory "$ISO_RUN/www" "$(cat "$ISO_RUN/http.port")"
for _ in $(seq 1 120); do [ -f "$ISO_RUN/rds/ready.json" ] && break; sleep 0.25; done
if [ ! -f "$ISO_RUN/rds/ready.json" ]; then
  echo "  RDS simulator did not start; see .run/logs/isocdrom-rds.log (skipping the ISOCDROM demo)" >&2
  return 0
fi
iso_ssh_port=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["ssh_port"])' "$ISO_RUN/rds/ready.json")
iso_known_hosts=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["known_hosts"])' "$ISO_RUN/rds/ready.json")
iso_sha=$(sha256sum "$ISO_RUN/www/demo.iso" | cut -d' ' -f1)
kubectl create namespace trellis-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
metadata: {name: sim-rds-credentials, namespace: trellis-system}
stringData: {username: trellis, password: "$(cat "$ISO_RUN/password")"}
---
apiVersion: trellis.dev/v1alpha1
kind: Router
metadata: {name: sim-rds}
spec:
  address: $LAB_HOST
  role: rds
  sshPort: $iso_ssh_port
  credentialsSecretRef: {name: sim-rds-credentials, namespace: trellis-system}
  sshHostKey: {knownHosts: "$iso_known_hosts"}
---
apiVersion: trellis.dev/v1alpha1
kind: ISOCDROM
metadata: {name: demo-iso}
spec:
  source: {url: "http://$LAB_HOST:$(cat "$ISO_RUN/http.port")/demo.iso", sha256: $iso_sha}
  target: {routerRef: sim-rds}
  description: Demo image built by make up
  deletePolicy: Delete
YAML
echo "  Router sim-rds -> RDS simulator SSH/SFTP on $LAB_HOST:$iso_ssh_port; ISOCDROM demo-iso (kubectl get icd)"
