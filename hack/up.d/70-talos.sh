# Talos: the boot service (a Pod from the chart) serves kernel/initramfs from the lab web server.
# They are not downloaded: placeholders in the served layout; replace them with real Talos files to
# boot real machines (docs/talos.md, "Kernel and initramfs").
mkdir -p "$LAB/www/talos/v1.12.0"
for f in vmlinuz-amd64 initramfs-amd64.xz; do
  [ -f "$LAB/www/talos/v1.12.0/$f" ] || echo "placeholder, not a Talos $f" > "$LAB/www/talos/v1.12.0/$f"
done
echo "  Talos assets: http://$LAB_HOST:18090/talos/ (placeholders)"
