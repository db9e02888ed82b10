#!/usr/bin/env bash
# Builds the Talos stand-in guest for test VMs into OUTDIR:
#   vmlinuz-amd64, initramfs-amd64.xz   the names the boot service serves for a TalosCluster
#   standin.iso                         hybrid CD/disk image (BIOS + UEFI) booting the same pair
#   manifest.json                       names, sizes, sha256, kernel version
# The result is cached under ~/.cache/trellis/guest-<hash of inputs>: a second run is a copy.
# Needs (hack/install-deps.sh): Go, apt (Debian's kernel and busybox-static .debs are downloaded,
# never installed), cpio, xz-utils, grub-pc-bin, grub-efi-amd64-bin, mtools, xorriso.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
# virtio-net chain in load order, then the disk; everything else the VMs need is built in.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk)

# The candidate versions come from the local apt lists, so a cache hit needs no network (one
# apt-cache call: each loads the whole package cache, seconds on a busy machine).
resolve() {
  apt-cache show --no-all-versions linux-image-amd64 busybox-static 2>/dev/null | awk '
    /^Package: /{p=$2} p=="linux-image-amd64" && /^Depends: /{sub(/^Depends: /,""); print "kdep=" $0}
    p=="busybox-static" && /^Version: /{print "bbver=" $2}'
}
info=$(resolve)
if [ -z "$info" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  info=$(resolve)
fi
kdep=$(sed -n 's/^kdep=//p' <<<"$info" | head -n1)
bbver=$(sed -n 's/^bbver=//p' <<<"$info" | head -n1)
kpkg=${kdep%% *}               # linux-image-6.1.0-57-amd64 (= 6.1.192-3)
kver=${kpkg#linux-image-}      # 6.1.0-57-amd64
kpkgver=$(sed -n 's/.*(= \([^)]*\)).*/\1/p' <<<"$kdep")
[ -n "$kver" ] && [ -n "$bbver" ] || { echo "build.sh: cannot resolve linux-image-amd64 / busybox-static from apt" >&2; exit 1; }

key=$( {
  echo "$kdep $bbver $(go version) $(dpkg-query -W -f='${Version} ' grub-pc-bin grub-efi-amd64-bin xorriso 2>/dev/null)"
  echo "${modules[*]}"
  cd "$here" && cat build.sh init udhcpc.script go.mod go.sum ./*.go
} | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/trellis/guest-$key
files=(vmlinuz-amd64 initramfs-amd64.xz standin.iso manifest.json)

install_out() {
  mkdir -p "$out"
  for f in "${files[@]}"; do cp -f "$cache/$f" "$out/$f.tmp" && mv -f "$out/$f.tmp" "$out/$f"; done
}
if [ -f "$cache/manifest.json" ]; then
  install_out
  echo "guest: cached $cache -> $out"
  exit 0
fi

start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# As root apt-get warns that _apt cannot write here (the download works): show it only on failure.
apt-get download -qq "$kpkg" busybox-static >download.log 2>&1 || { cat download.log >&2; exit 1; }
dpkg-deb -x linux-image-"$kver"_*.deb kernel
dpkg-deb -x busybox-static_*.deb bb

root=$work/root
mkdir -p "$root"/{bin,dev,etc,lib/modules,proc,run,sys,tmp}
cp bb/bin/busybox "$root/bin/busybox"
(cd "$here" && go build -trimpath -ldflags '-s -w' -o "$root/bin/trellis-guest" .)
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"
# Without /dev/console in the archive the kernel starts /init with no stdout (needs root).
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

moddir=kernel/lib/modules/$kver
have=" "
for m in "${modules[@]}"; do
  ko=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
  [ -n "$ko" ] || { echo "build.sh: module $m not found in $kpkg" >&2; exit 1; }
  case $ko in *.xz) xz -dc "$ko" > "$root/lib/modules/$m.ko" ;; *) cp "$ko" "$root/lib/modules/$m.ko" ;; esac
  # Every dependency must be built in or loaded earlier in the list.
  deps=$(tr '\0' '\n' < "$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' ')
  for d in $deps; do
    case $have in *" $d "*) ;; *)
      grep -q "/$d.ko$" "$moddir/modules.builtin" || { echo "build.sh: $m needs $d, which is not in the list" >&2; exit 1; } ;;
    esac
  done
  have="$have$m "
  echo "$m" >> "$root/lib/modules/order"
done

mkdir -p result
cp "kernel/boot/vmlinuz-$kver" result/vmlinuz-amd64
# The kernel's xz decoder only knows CRC32 (and the x86 BCJ filter, which shrinks the binaries).
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
  | xz --check=crc32 --x86 --lzma2=preset=9 -T1 > result/initramfs-amd64.xz

iso=$work/iso
mkdir -p "$iso/boot/grub"
cp result/vmlinuz-amd64 "$iso/boot/vmlinuz"
cp result/initramfs-amd64.xz "$iso/boot/initramfs.xz"
# No talos.config: booted from CD this is the live ISO, from the installed disk the stored
# config decides. grub talks on the serial line too so a stuck boot is visible in the log.
cat > "$iso/boot/grub/grub.cfg" <<'EOF'
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
menuentry "Trellis Talos stand-in" {
  linux /boot/vmlinuz console=tty0 console=ttyS0,115200 talos.platform=metal
  initrd /boot/initramfs.xz
}
EOF
# Default grub-mkrescue: El Torito BIOS + UEFI for CDs, and an MBR (boot_hybrid.img) plus an
# EFI system partition for the same bytes written to a disk.
grub-mkrescue -o result/standin.iso --compress=xz --fonts= --locales= --themes= "$iso" -- -volid TRELLIS_STANDIN 2>grub.log \
  || { cat grub.log >&2; exit 1; }

entry() { printf '    {"name": "%s", "size": %d, "sha256": "%s"}' "$1" "$(stat -c %s "result/$1")" "$(sha256sum "result/$1" | cut -d' ' -f1)"; }
{
  printf '{\n  "kernel": {"package": "%s", "version": "%s", "release": "%s"},\n' "$kpkg" "$kpkgver" "$kver"
  printf '  "busybox": "%s",\n  "modules": ["%s"],\n  "files": [\n' "$bbver" "$(IFS=,; echo "${modules[*]}" | sed 's/,/", "/g')"
  entry vmlinuz-amd64; echo ,; entry initramfs-amd64.xz; echo ,; entry standin.iso; echo
  printf '  ]\n}\n'
} > result/manifest.json

mkdir -p "$(dirname "$cache")"
rm -rf "$cache.tmp.$$"
mv result "$cache.tmp.$$"
mv -T "$cache.tmp.$$" "$cache" 2>/dev/null || rm -rf "$cache.tmp.$$"  # a parallel build won
install_out
echo "guest: built in $((SECONDS - start)) s ($kver, busybox $bbver) -> $out"
ls -l "$out" | sed 1d
