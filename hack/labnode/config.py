"""The node's configuration files, rendered from a NodeSpec. Every setting that differs from the
component's default says why; everything else is left at the default on purpose."""

from __future__ import annotations

import json
from pathlib import Path

from labnode.spec import PAUSE_IMAGE, NodeSpec

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins


def containerd_toml(spec: NodeSpec) -> str:
    return f"""\
# containerd 1.6 for the Trellis test node ({spec.name}). Own root, state and socket, so it
# never touches a system containerd; runs inside the node's network namespace (nsenter --net),
# in the host's mount namespace.
version = 2
root = "{spec.containerd_root}"
state = "{spec.containerd_state}"
# Snapshotters and plugins this lab cannot use: skipping them keeps the log readable. "opt"
# would create /opt/containerd on the host.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{spec.containerd_socket}"

[ttrpc]
  address = "{spec.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  # Built locally (hack/labnode/pause): there is no registry to pull registry.k8s.io/pause from.
  sandbox_image = "{PAUSE_IMAGE}"
  # Pod network namespaces are mounted under our state dir, so teardown finds every one of them.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # Processes here may not lower oom_score_adj (the sandbox VM's init holds it at its own
  # value; runc fails with "failed to update /proc/self/oom_score_adj: Permission denied"):
  # cap what the kubelet asks for at containerd's own score.
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    # overlayfs works on this kernel (ext4 underneath) and is what production nodes use.
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 managed by the kubelet's cgroupfs driver: no systemd here.
        SystemdCgroup = false
        # runc's state next to ours instead of /run/containerd/runc, shared with any other containerd.
        Root = "{spec.containerd_state / "runc"}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{spec.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_conflist(spec: NodeSpec) -> str:
    conf = {
        "cniVersion": "1.0.0",
        "name": "trellis-lab",
        "plugins": [
            {
                # One bridge in the node namespace; Pods route through its gateway address.
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                # Pod addresses are unknown outside the node namespace: masquerade to the node IP
                # so replies from the host end come back.
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": spec.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    # Default is /var/lib/cni/networks, shared by every node on this machine.
                    "dataDir": str(spec.dir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_yaml(spec: NodeSpec, certs: Path) -> str:
    taints = ""
    for taint in spec.taints:  # key=value:Effect
        key, _, rest = taint.partition("=")
        value, _, effect = rest.partition(":")
        taints += f'\n  - key: {key}\n    value: "{value}"\n    effect: {effect}'
    return f"""\
# kubelet for the Trellis test node ({spec.name}); KubeletConfiguration v1beta1.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The node IP: the node end of the veth. The apiserver reaches the kubelet here (logs, exec).
address: {spec.node_ip}
port: 10250
# Serving cert for the node IP, signed by the testenv CA (apiserver --kubelet-certificate-authority).
tlsCertFile: {certs / "kubelet-serving.crt"}
tlsPrivateKeyFile: {certs / "kubelet-serving.key"}
# A real node's auth: client certs from the cluster CA, everything else by TokenReview, and every
# request authorized by SubjectAccessReview. No anonymous access.
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 10s
  x509:
    clientCAFile: {spec.ca}
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 10s
    cacheUnauthorizedTTL: 5s
containerRuntimeEndpoint: unix://{spec.containerd_socket}
# This machine has cgroup v1, which kubelet 1.35 refuses unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
# Pods of this node live under their own cgroup, so several nodes (and teardown) stay apart.
cgroupRoot: /{spec.cgroup}
failSwapOn: false
# Small shared disks: evict only when really full, never garbage-collect test images.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 24h
# Fast feedback for tests: status, pod sync and ConfigMap/Secret refreshes in seconds.
syncFrequency: 5s
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 10s
fileCheckFrequency: 5s
httpCheckFrequency: 5s
# No read-only port, no cloud, no DNS add-on (there is no cluster DNS in the lab).
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
resolvConf: ""
serializeImagePulls: false
# The FlexVolume dir defaults to /usr/libexec/kubernetes/...: keep the host untouched.
volumePluginDir: {spec.kubelet_dir / "volume-plugins"}
registerWithTaints:{taints or " []"}
"""


def kube_proxy_yaml(spec: NodeSpec, kubeconfig: Path) -> str:
    return f"""\
# kube-proxy for the Trellis test node ({spec.name}): iptables mode, inside the node namespace,
# so its rules vanish with the namespace.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: {spec.name}
bindAddress: {spec.node_ip}
clusterCIDR: {spec.pod_cidr}
clientConnection:
  kubeconfig: {kubeconfig}
iptables:
  # Pod-to-Service traffic that lands on a Pod of the same bridge would return at layer 2,
  # bypassing conntrack; masquerading all Service traffic keeps both directions routed.
  masqueradeAll: true
  syncPeriod: 10s
  minSyncPeriod: 0s
# conntrack limits are host-wide sysctls: leave them alone (0 = do not set).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
"""


def kubeconfig(spec: NodeSpec, user: str, cert: Path, key: Path) -> str:
    # tls-server-name: every node reaches the apiserver through its own host-end address, which
    # only the session's first node has in the serving certificate.
    return f"""\
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://{spec.host_ip}:{spec.server_port}
    certificate-authority: {spec.ca}
    tls-server-name: kubernetes
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: lab
  context:
    cluster: lab
    user: {user}
current-context: lab
"""
