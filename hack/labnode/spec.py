"""What a test node is: its name, addresses and where its files live.

Addresses (defaults for the first node of a control plane; see docs/development.md "The test node"):

    host end of the veth   10.199.0.1/30   (root namespace; the apiserver advertises it)
    node end of the veth   10.199.0.2/30   (eth0 in the node's network namespace: the node IP)
    pods                   10.244.0.0/24   (cni0 bridge inside the node namespace; masqueraded)
    Services               10.0.0.0/24     (kube-proxy rules inside the node namespace)

The host end is the only address outside the node namespace, and it exists only on the veth.
Pod and node addresses are never routed on the host: Pod traffic is masqueraded to the node IP
and the node namespace has no default route, so nothing can leave it except to the host end.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PAUSE_IMAGE = "trellis.local/labnode/pause:v1"
# Matches trellis-testenv's --service-cluster-ip-range (older ready.json files lack it).
DEFAULT_SERVICE_CIDR = "10.0.0.0/24"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    dir: Path
    host_ip: str  # host end of the veth; the apiserver's advertised address
    server_port: int  # apiserver secure port on 127.0.0.1, relayed on host_ip
    ca: Path
    ca_key: Path
    pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = DEFAULT_SERVICE_CIDR
    prefix: int = 30
    # Extra taints registered by the kubelet, e.g. to keep workloads off a throw-away node.
    taints: tuple[str, ...] = field(default_factory=tuple)

    @property
    def node_ip(self) -> str:
        return str(ipaddress.ip_address(self.host_ip) + 1)

    @property
    def tag(self) -> str:
        """Short, stable id for names with length limits (interfaces: 15 chars)."""
        return hashlib.sha1(f"{self.name}:{self.dir}".encode()).hexdigest()[:8]

    @property
    def netns(self) -> str:
        return f"trellis-{self.name}-{self.tag}"

    @property
    def host_if(self) -> str:
        return f"trn{self.tag}"

    @property
    def cgroup(self) -> str:
        """kubelet's cgroupRoot, in every v1 hierarchy: its pods stay apart from other nodes'."""
        return f"trellis-{self.tag}"

    @property
    def kubelet_dir(self) -> Path:
        return self.dir / "kubelet"

    @property
    def containerd_root(self) -> Path:
        return self.dir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.dir / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.dir / "cni" / "net.d"

    def to_json(self) -> str:
        data = asdict(self)
        data = {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> NodeSpec:
        data = json.loads(text)
        for key in ("dir", "ca", "ca_key"):
            data[key] = Path(data[key])
        data["taints"] = tuple(data.get("taints", ()))
        return cls(**data)

    @classmethod
    def for_control_plane(cls, kubeconfig: Path, node_dir: Path, name: str = "trellis-node") -> NodeSpec:
        """The node of the control plane whose trellis-testenv ready.json sits next to ``kubeconfig``."""
        ready = json.loads((kubeconfig.parent / "ready.json").read_text())
        if "host_address" not in ready:
            raise RuntimeError(f"{kubeconfig.parent}/ready.json predates the node: restart the control plane")
        return cls(
            name=name,
            dir=node_dir.resolve(),
            host_ip=ready["host_address"],
            server_port=int(ready["port"]),
            ca=Path(ready["ca"]),
            ca_key=Path(ready["ca_key"]),
            service_cidr=ready.get("service_cidr", DEFAULT_SERVICE_CIDR),
        )


def free_link(start: str = "10.199.0.1") -> str:
    """The first host-end address of a /30 in 10.199.0.0/16 not configured on this machine."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        used = {
            ipaddress.ip_network(f"{a.get_attr('IFA_ADDRESS')}/30", strict=False)
            for a in ipr.get_addr(family=2)
        }
    base = ipaddress.ip_address(start)
    for i in range(16384):
        host = base + 4 * i
        if host not in ipaddress.ip_network("10.199.0.0/16"):
            break
        if ipaddress.ip_network(f"{host}/30", strict=False) not in used:
            return str(host)
    raise RuntimeError("no free /30 in 10.199.0.0/16")
