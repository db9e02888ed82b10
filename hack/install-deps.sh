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
