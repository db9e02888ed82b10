# Trellis as users run it: the images `make image` built, imported into the node's containerd, and
# `helm upgrade --install` of the chart with the lab's values (our images, the CSI driver on the
# simulated RDS with the loop transport and its StorageClass the default, the boot service on
# NodePort 30847). Every operator, the boot service and the CSI driver then run as Pods.
python -m labnode import --dir "$RUN/node" build/images/*.tar >/dev/null
[ -d build/snapshot-crds ] && kubectl apply --server-side -f build/snapshot-crds >/dev/null
python -m tests.support.release values --node-json "$RUN/node/node.json" --rds-dir "$CSI_RUN/rds" \
  --rds-user trellis-csi --rds-key "$CSI_RUN/client_ed25519" --default-class > "$RUN/lab-values.yaml"
helm upgrade --install trellis charts/trellis -n trellis-system --create-namespace \
  -f "$RUN/lab-values.yaml" --wait --timeout 5m >/dev/null
kubectl get pods -n trellis-system -o wide | sed 's/^/  /'
echo "  watch them: kubectl get pods -A -o wide -w    logs: kubectl logs -n trellis-system deploy/trellis-network"
