# Registry operator: the real registry binary (docker-registry) on LAB_HOST with the operator's own
# rendered config.yml and a generated CA, described by an external Registry "sim-registry"
# (docs/registry.md).
REG_RUN=$RUN/registry
mkdir -p "$REG_RUN"
if [ ! -f "$REG_RUN/config.yml" ] || ! grep -qx "$LAB_HOST" "$REG_RUN/host" 2>/dev/null; then
  python - "$REG_RUN" "$LAB_HOST" <<'PY'
import socket, sys
from pathlib import Path
from trellis.operators.registry import pki
from trellis.operators.registry.config import Paths, ServeOptions, render_config
root, host = Path(sys.argv[1]), sys.argv[2]
with socket.socket() as s:
    s.bind((host, 0))
    port = s.getsockname()[1]
ca = pki.generate_ca("trellis make-up registry CA")
serving = pki.issue_serving(ca, ["localhost", "127.0.0.1", host])
(root / "tls").mkdir(exist_ok=True)
(root / "tls/tls.crt").write_text(serving.cert_pem)
(root / "tls/tls.key").write_text(serving.key_pem)
(root / "ca.crt").write_text(ca.cert_pem)
(root / "port").write_text(str(port))
paths = Paths(config=str(root / "config.yml"), storage=str(root / "data"), tls_dir=str(root / "tls"))
opts = ServeOptions(name="sim-registry", port=port, listen_host=host, delete_enabled=True, paths=paths)
(root / "config.yml").write_text(render_config(opts))
(root / "host").write_text(host + "\n")
PY
fi
start registry docker-registry serve "$REG_RUN/config.yml"
kubectl create namespace trellis-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create secret generic sim-registry-ca -n trellis-system --from-file=ca.crt="$REG_RUN/ca.crt" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: trellis.dev/v1alpha1
kind: Registry
metadata: {name: sim-registry}
spec:
  mode: external
  mirrorOf: [docker.io]
  external:
    url: https://$LAB_HOST:$(cat "$REG_RUN/port")
    caSecretRef: {name: sim-registry-ca, namespace: trellis-system, key: ca.crt}
YAML
echo "  Registry sim-registry -> docker-registry on https://$LAB_HOST:$(cat "$REG_RUN/port") (kubectl get reg)"
