#!/usr/bin/env bash
# Installs the Debian packages whose real programs the tests and `make up` drive.
# Only missing packages are installed, so a second run is a no-op.
set -euo pipefail
packages=(
  openssh-client      # real SSH client against the RouterOS simulator
  dnsmasq-base        # real DHCP/TFTP/DNS server for the Network operator
  ipxe                # undionly.kpxe / ipxe.efi / snponly.efi served over TFTP
  udhcpc              # real DHCP client in network namespaces
  iproute2
  ipmitool            # cross-checks the IPMI BMC driver
  docker-registry     # the CNCF distribution registry binary
  apache2-utils       # htpasswd for registry auth tests
  xorriso             # builds small ISO images for ISOCDROM tests
  tgt                 # tgtd: rossim --iscsi-portal serves iscsi-export disks as real iSCSI targets
  qemu-utils qemu-block-extra  # qemu-img/qemu-io with the libiscsi driver: the tests' iSCSI initiator
  nvme-cli            # parsed by the CSI node plugin (outputs and sysfs)
  e2fsprogs xfsprogs util-linux mount
  tftp-hpa            # real TFTP client
  buildah             # make image: builds the container images (vfs storage, chroot isolation)
  debootstrap         # make image: the local Debian bookworm base when no registry is reachable
  skopeo              # image tests: copies OCI archives to and from a registry, digests intact
  containerd runc     # the test node's container runtime (hack/labnode; started with its own config)
  containernetworking-plugins  # bridge, host-local and portmap CNI plugins for the test node's Pods
  iptables            # kube-proxy (iptables mode) and the node's egress guard, inside its netns
  dnsutils            # dig
  jq
  qemu-system-x86     # VMs that boot the Talos stand-in guest (hack/guest)
  ipxe-qemu           # iPXE option ROMs QEMU's NICs network-boot with
  ovmf                # UEFI firmware for the VMs (OVMF_CODE_4M.fd / OVMF_VARS_4M.fd)
  seabios             # BIOS firmware for the VMs
  grub-pc-bin         # hack/guest/build.sh: BIOS half of the hybrid stand-in ISO (grub-mkrescue)
  grub-efi-amd64-bin  # hack/guest/build.sh: UEFI half of the hybrid stand-in ISO
  mtools              # grub-mkrescue builds the ISO's EFI system partition image with it
  cpio                # hack/guest/build.sh: the stand-in initramfs archive
  xz-utils            # hack/guest/build.sh: initramfs compression (CRC32, as the kernel needs)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages (need root to install): ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
