# CSI driver: an RDS simulator of its own, the driver in `all` mode (loop transport: the node side
# attaches the simulator's image files), external-provisioner when it was built, and a StorageClass.
CSI_RUN=$RUN/csi
mkdir -p "$CSI_RUN/secret"
[ -f "$CSI_RUN/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$CSI_RUN/client_ed25519"
if ! alive csi-rds; then rm -f "$CSI_RUN/rds/ready.json"; fi
start csi-rds python -m rossim --data-dir "$CSI_RUN/rds" --api-port off --ssh-port 0 --control-port 0 \
  --pool-size 1T --user "trellis-csi:$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'):full" \
  --authorized-key "trellis-csi:$CSI_RUN/client_ed25519.pub"
for _ in $(seq 1 120); do [ -f "$CSI_RUN/rds/ready.json" ] && break; sleep 0.25; done
csi_ssh_port=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["ssh_port"])' "$CSI_RUN/rds/ready.json")
python -c 'import json,sys; print(json.load(open(sys.argv[1]))["known_hosts"])' "$CSI_RUN/rds/ready.json" \
  > "$CSI_RUN/secret/known_hosts"
cp "$CSI_RUN/client_ed25519" "$CSI_RUN/secret/ssh-privatekey"
echo trellis-csi > "$CSI_RUN/secret/username"
start csi-driver trellis-csi --mode all --endpoint "unix://$CSI_RUN/csi.sock" --node-id "$(hostname)" \
  --rds-address 127.0.0.1 --rds-ssh-port "$csi_ssh_port" --ssh-secret-dir "$CSI_RUN/secret" \
  --transport loop --loop-root "$CSI_RUN/rds/files" --metrics-address 127.0.0.1:9810
for _ in $(seq 1 120); do [ -S "$CSI_RUN/csi.sock" ] && break; sleep 0.25; done
if [ -x bin/csi-provisioner ]; then
  start csi-provisioner bin/csi-provisioner --csi-address="$CSI_RUN/csi.sock" --kubeconfig="$KUBECONFIG" \
    --leader-election=false --feature-gates=Topology=false
fi
kubectl apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: rds-nvme}
provisioner: rds.csi.trellis.dev
allowVolumeExpansion: true
parameters: {basePath: storage-pool/trellis-csi}
YAML
echo "  StorageClass rds-nvme -> RDS simulator on 127.0.0.1:$csi_ssh_port; metrics 127.0.0.1:9810"
