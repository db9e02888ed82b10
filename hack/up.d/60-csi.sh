# CSI driver: an RDS simulator of its own on LAB_HOST (the controller Pod reaches it over SSH; the
# node plugin Pod attaches its volume files with the loop transport). The driver itself, its
# sidecars and the StorageClass come from the chart (80-release.sh).
CSI_RUN=$RUN/csi
mkdir -p "$CSI_RUN"
[ -f "$CSI_RUN/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$CSI_RUN/client_ed25519"
if ! alive csi-rds; then rm -f "$CSI_RUN/rds/ready.json"; fi
start csi-rds python -m rossim --data-dir "$CSI_RUN/rds" --host "$LAB_HOST" --api-port off --ssh-port 0 \
  --control-port 0 --pool-size 1T --user "trellis-csi:$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'):full" \
  --authorized-key "trellis-csi:$CSI_RUN/client_ed25519.pub"
for _ in $(seq 1 120); do [ -f "$CSI_RUN/rds/ready.json" ] && break; sleep 0.25; done
[ -f "$CSI_RUN/rds/ready.json" ] || { echo "CSI RDS simulator did not start; see .run/logs/csi-rds.log" >&2; exit 1; }
csi_ssh_port=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["ssh_port"])' "$CSI_RUN/rds/ready.json")
echo "  RDS simulator for the CSI driver: SSH $LAB_HOST:$csi_ssh_port, volume files in .run/csi/rds/files"
