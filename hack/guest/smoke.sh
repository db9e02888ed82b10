#!/usr/bin/env bash
# Developer check of the Talos stand-in guest with real QEMU (TCG), user-mode networking only:
#   a) network boot (-kernel/-initrd, talos.config=): config 403, 403, then 200; install; reboot
#   b) boot the installed disk with SeaBIOS and with OVMF: Talos API on :50000 verified with
#      openssl s_client (client cert, CA, IP SAN, ALPN h2), then gRPC over curl (HTTP/2, a
#      hand-framed empty message): MachineService.Version answers the installer's tag (grpc-status
#      0), another method grpc-status 12 Unimplemented
#   c) boot standin.iso as a CD with a blank disk (SeaBIOS, OVMF): stage=iso
#   d) day-2 calls on the installed disk (SeaBIOS), hand-framed gRPC over curl: Upgrade with the
#      SMBIOS OEM string trellis-guest.fault=upgrade-rollback (comes back with v1.12.0), Upgrade
#      without it (v1.12.1), Reset reboot=false (a guest power-off, not a reset: QEMU runs with
#      -action shutdown=pause; the wiped disk then finds no bootable device)
# Usage: hack/guest/smoke.sh [GUEST_DIR]   (default build/lab/guest, built/cached first)
# Prints per-step timings; exits non-zero on the first failure and keeps its work dir (serial logs
# NAME.log, http.log) then, or always with SMOKE_KEEP=1.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest=${1:-$here/../../build/lab/guest}
bash "$here/build.sh" "$guest" >/dev/null
guest=$(cd "$guest" && pwd)
work=$(mktemp -d /tmp/trellis-guest-smoke.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" = 0 ] && [ -z "${SMOKE_KEEP:-}" ]; then rm -rf "$work"; else echo "smoke: logs kept in $work" >&2; fi
}
trap cleanup EXIT
cd "$work"
t0=$SECONDS
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- a machine CA in Talos' format (Ed25519, key as PKCS#8 under "ED25519 PRIVATE KEY") ---
openssl genpkey -algorithm ed25519 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj /O=talos -days 2 -out ca.crt \
  -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,digitalSignature 2>/dev/null
openssl genpkey -algorithm ed25519 -out client.key 2>/dev/null
openssl req -new -key client.key -subj /O=os:admin -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' > client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.crt 2>/dev/null
cat > config.yaml <<EOF
version: v1alpha1
machine:
  type: controlplane
  token: smoke.0123456789abcdef
  ca:
    crt: $(base64 -w0 ca.crt)
    key: $(sed 's/PRIVATE KEY/ED25519 PRIVATE KEY/' ca.key | base64 -w0)
  install: {disk: /dev/vda, image: "ghcr.io/siderolabs/installer:v1.12.0"}
cluster:
  controlPlane: {endpoint: https://10.0.2.15:6443}
---
apiVersion: v1alpha1
kind: HostnameConfig
auto: "off"
hostname: cp1
EOF

# --- the boot service stand-in: 403 twice, then the config; and the install image ---
cat > serve.py <<'EOF'
import http.server, sys
denials = 2
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global denials
        if self.path.startswith("/config"):
            if denials > 0:
                denials -= 1
                self.send_error(403)
                return
            body = open("config.yaml", "rb").read()
        elif self.path == "/standin.iso":
            body = open(sys.argv[2], "rb").read()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open("port", "w").write(str(s.server_address[1]))
s.serve_forever()
EOF
python3 serve.py "$work" "$guest/standin.iso" 2>http.log &
pids+=($!)
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
port=$(cat port)
echo "smoke: CA, config and HTTP server ready on 127.0.0.1:$port ($((SECONDS - t0)) s)"

truncate -s 96M disk.raw
cp /usr/share/OVMF/OVMF_VARS_4M.fd vars.fd
ovmf=(-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,file=vars.fd)

# qemu NAME EXTRA...: starts a VM in the background with its serial log in NAME.log.
qemu() {
  local name=$1 fwd=$2; shift 2
  qemu-system-x86_64 -accel tcg -m 512 -smp 1 -display none -monitor none -serial "file:$name.log" -no-reboot \
    -uuid 5a1d3e2c-0000-4000-8000-000000000001 -smbios type=1,serial=SMOKE-1 \
    -netdev "user,id=n0,hostname=smoke-vm$fwd" -device virtio-net-pci,netdev=n0,mac=52:54:00:00:5e:01,romfile= \
    "$@" >"$name.qemu.log" 2>&1 &
  qpid=$!
  pids+=("$qpid")
}
# wait_for NAME PATTERN TIMEOUT: until the serial log has PATTERN; prints the elapsed time.
wait_for() {
  local name=$1 pattern=$2 timeout=$3 start=$SECONDS
  while ! grep -aq -- "$pattern" "$name.log" 2>/dev/null; do
    if ! kill -0 "$qpid" 2>/dev/null; then grep -a 'trellis-guest' "$name.log" >&2 || true; fail "$name: QEMU exited before '$pattern'"; fi
    [ $((SECONDS - start)) -lt "$timeout" ] || { tail -n 20 "$name.log" >&2; fail "$name: no '$pattern' after ${timeout}s"; }
    sleep 0.5
  done
  echo "smoke: $name: '$pattern' after $((SECONDS - start)) s"
}
stop() { kill "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; }

# a) network boot and install
step=$SECONDS
qemu pxe "" -kernel "$guest/vmlinuz-amd64" -initrd "$guest/initramfs-amd64.xz" \
  -append "console=ttyS0 talos.platform=metal slab_nomerge pti=on init_on_alloc=1 init_on_free=1 talos.config=http://10.0.2.2:$port/config?mac=\${mac}&uuid=\${uuid}&serial=\${serial} trellis.standin.image=http://10.0.2.2:$port/standin.iso" \
  -drive file=disk.raw,if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0
wait_for pxe 'stage=lease' 120
wait_for pxe 'stage=config .*source=url' 120
wait_for pxe 'stage=install ' 180
wait_for pxe 'stage=reboot' 60
for _ in $(seq 60); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$qpid" 2>/dev/null && fail "pxe: QEMU did not exit on reboot (-no-reboot)"
[ "$(grep -ac 'stage=config-fetch.*status=403' pxe.log)" = 2 ] || fail "pxe: expected two 403 attempts"
grep -aq "uuid=5a1d3e2c-0000-4000-8000-000000000001&serial=SMOKE-1" http.log || fail "pxe: \${uuid}/\${serial} not expanded: $(grep config http.log | tail -n1)"
grep -aq 'mac=52%3A54%3A00%3A00%3A5e%3A01' http.log || fail "pxe: \${mac} not expanded"
echo "smoke: a) network boot + install + reboot: $((SECONDS - step)) s"

# b) the installed disk, SeaBIOS then OVMF
check_api() {
  local name=$1 apiport=$2 out
  out=$(openssl s_client -connect "127.0.0.1:$apiport" -cert client.crt -key client.key -CAfile ca.crt \
    -alpn h2 -verify_return_error -verify_ip 10.0.2.15 </dev/null 2>&1) || { echo "$out" >&2; fail "$name: TLS handshake"; }
  grep -q 'Verify return code: 0 (ok)' <<<"$out" || fail "$name: server certificate not verified"
  grep -q 'ALPN protocol: h2' <<<"$out" || fail "$name: ALPN h2 not negotiated"
  # grpcurl is not installed here: curl speaks gRPC well enough for unary calls with an empty
  # request (google.protobuf.Empty: a 5-byte frame, uncompressed, length 0); trailers land in -D.
  grpc() {
    printf '\0\0\0\0\0' > empty.bin
    curl -sS --http2 --max-time 20 --cacert ca.crt --cert client.crt --key client.key -D - -o "$2" \
      --resolve "cp1:$apiport:127.0.0.1" -X POST -H 'content-type: application/grpc' -H 'te: trailers' \
      --data-binary @empty.bin "https://cp1:$apiport/machine.MachineService/$1"
  }
  out=$(grpc Version version.bin) || fail "$name: gRPC Version request"
  grep -qi '^grpc-status: 0' <<<"$out" || { echo "$out" >&2; fail "$name: Version: no grpc-status 0"; }
  grep -aq 'v1.12.0' version.bin || fail "$name: Version does not report the installer's tag v1.12.0"
  out=$(grpc Hostname /dev/null) || fail "$name: gRPC Hostname request"
  grep -qi '^grpc-status: 12' <<<"$out" || { echo "$out" >&2; fail "$name: Hostname: no grpc-status 12"; }
  if curl -s --http2 --max-time 20 --cacert ca.crt --resolve "cp1:$apiport:127.0.0.1" -o /dev/null "https://cp1:$apiport/" -X POST; then
    fail "$name: a client without certificate was accepted"
  fi
  echo "smoke: $name: TLS verified (client cert, IP SAN, ALPN h2), Version v1.12.0, others Unimplemented, no-cert client refused"
}
for fw in seabios ovmf; do
  step=$SECONDS
  apiport=$(free_port)
  fwargs=()
  [ "$fw" = ovmf ] && fwargs=("${ovmf[@]}")
  qemu "disk-$fw" ",hostfwd=tcp:127.0.0.1:$apiport-:50000" "${fwargs[@]}" \
    -drive file=disk.raw,if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0,bootindex=1
  wait_for "disk-$fw" 'stage=init mode=disk' 240
  wait_for "disk-$fw" 'stage=installed .*hostname=cp1 ca=machine version=v1.12.0' 120
  check_api "disk-$fw" "$apiport"
  stop
  echo "smoke: b) installed disk ($fw): $((SECONDS - step)) s"
done

# c) the live ISO with a blank disk
truncate -s 0 blank.raw && truncate -s 96M blank.raw
cp /usr/share/OVMF/OVMF_VARS_4M.fd vars.fd
for fw in seabios ovmf; do
  step=$SECONDS
  fwargs=()
  [ "$fw" = ovmf ] && fwargs=("${ovmf[@]}")
  qemu "iso-$fw" "" "${fwargs[@]}" -drive file=blank.raw,if=virtio,format=raw \
    -drive "file=$guest/standin.iso,media=cdrom,readonly=on" -boot d
  wait_for "iso-$fw" 'stage=init mode=iso' 240
  wait_for "iso-$fw" 'stage=iso ' 120
  stop
  echo "smoke: c) live ISO ($fw): $((SECONDS - step)) s"
done
# d) day-2: Upgrade (with and without the rollback fault) and Reset, on the disk installed in a)
# frame FILE HEX-MESSAGE: one uncompressed gRPC message.
frame() { python3 -c 'import sys; m=bytes.fromhex(sys.argv[2]); open(sys.argv[1],"wb").write(b"\0"+len(m).to_bytes(4,"big")+m)' "$1" "$2"; }
image=ghcr.io/siderolabs/installer:v1.12.1
frame upgrade.bin "0a$(printf '%02x' ${#image})$(printf %s "$image" | od -An -tx1 | tr -d ' \n')"   # UpgradeRequest{image}
frame reset.bin 0801                                                                                # ResetRequest{graceful: true}
call() {  # call NAME METHOD BODY OUT: the trailers/headers on stdout
  curl -sS --http2 --max-time 30 --cacert ca.crt --cert client.crt --key client.key -D - -o "$4" \
    --resolve "cp1:$apiport:127.0.0.1" -X POST -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary "@$3" "https://cp1:$apiport/machine.MachineService/$2" || fail "$1: $2 request"
}
wait_exit() {
  for _ in $(seq 120); do kill -0 "$qpid" 2>/dev/null || return 0; sleep 0.5; done
  fail "$1: QEMU did not exit"
}
fault=(-smbios type=11,value=trellis-guest.fault=upgrade-rollback)
disk=(-drive file=disk.raw,if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0,bootindex=1)
step=$SECONDS
apiport=$(free_port)
qemu day2-a ",hostfwd=tcp:127.0.0.1:$apiport-:50000" "${fault[@]}" "${disk[@]}"
wait_for day2-a 'stage=faults faults=upgrade-rollback' 240
wait_for day2-a 'stage=installed .*version=v1.12.0' 120
out=$(call day2-a Upgrade upgrade.bin up.out)
grep -qi '^grpc-status: 0' <<<"$out" && grep -aq 'Upgrade request received' up.out || { echo "$out" >&2; fail "day2-a: Upgrade not acknowledged"; }
wait_for day2-a "stage=api-call method=Upgrade image=$image .*result=accepted" 30
wait_for day2-a 'stage=reboot reason=upgrade' 30
wait_exit day2-a
qemu day2-b ",hostfwd=tcp:127.0.0.1:$apiport-:50000" "${fault[@]}" "${disk[@]}"
wait_for day2-b 'stage=upgrade-rollback version=v1.12.0 attempted=v1.12.1' 240
wait_for day2-b 'stage=installed .*version=v1.12.0' 120
out=$(call day2-b Upgrade upgrade.bin up.out)
grep -qi '^grpc-status: 0' <<<"$out" || { echo "$out" >&2; fail "day2-b: Upgrade"; }
wait_exit day2-b
qemu day2-c ",hostfwd=tcp:127.0.0.1:$apiport-:50000" -action shutdown=pause "${disk[@]}"
wait_for day2-c 'stage=upgraded from=v1.12.0 to=v1.12.1' 240
wait_for day2-c 'stage=installed .*version=v1.12.1' 120
out=$(call day2-c Version empty.bin version.bin)
grep -aq 'v1.12.1' version.bin || fail "day2-c: Version does not report v1.12.1"
out=$(call day2-c Reset reset.bin reset.out)
grep -qi '^grpc-status: 0' <<<"$out" || { echo "$out" >&2; fail "day2-c: Reset"; }
wait_for day2-c 'stage=api-call method=Reset reboot=false graceful=true mode=ALL result=accepted' 30
wait_for day2-c 'stage=wiped full=true' 30
wait_for day2-c 'stage=poweroff reason=reset' 30
sleep 3
kill -0 "$qpid" 2>/dev/null || fail "day2-c: QEMU exited: the guest reset instead of powering off"
stop
qemu day2-d "" -machine pc,graphics=off "${disk[@]}"   # graphics=off: SeaBIOS prints to the serial port
wait_for day2-d 'No bootable device' 120
stop
echo "smoke: d) upgrade rollback, upgrade, reset + power-off, disk no longer bootable: $((SECONDS - step)) s"
echo "smoke: all passed in $((SECONDS - t0)) s"
