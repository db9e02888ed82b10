# Talos: the boot service for the example TalosCluster/TalosDevices (namespace trellis-examples).
# Kernel/initramfs are not downloaded: .run/talos-assets holds placeholders in the served layout;
# replace them with real Talos files to boot real machines (docs/talos.md, "Kernel and initramfs").
TALOS_RUN=$RUN/talos
mkdir -p "$TALOS_RUN/assets/v1.12.0"
for f in vmlinuz-amd64 initramfs-amd64.xz; do
  [ -f "$TALOS_RUN/assets/v1.12.0/$f" ] || echo "placeholder, not a Talos $f" > "$TALOS_RUN/assets/v1.12.0/$f"
done
kubectl create namespace trellis-examples --dry-run=client -o yaml | kubectl apply -f - >/dev/null
start talos-boot-service python -m trellis.operators.talosdevice.bootservice --listen 127.0.0.1 --port 18470 \
  --public-url http://127.0.0.1:18470 --namespace trellis-examples --assets-dir "$TALOS_RUN/assets"
wait_http http://127.0.0.1:18470/healthz 60
echo "  boot service http://127.0.0.1:18470 (try: curl 'http://127.0.0.1:18470/ipxe?mac=52:54:00:aa:bb:01')"
