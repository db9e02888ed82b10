"""Bring a test node up and down: an ordered list of actions, each with a deadline, like kind's
cluster creation. A failed bring-up tears down what was made (unless ``retain``), keeping the
logs; teardown works from the node dir alone, so ``python -m labnode down`` in a fresh process
cleans up after a crashed session.

What runs where:

    root namespace   trellis-node forward   host_ip:port -> 127.0.0.1:port (the apiserver)
    node namespace   containerd, kubelet, kube-proxy (nsenter --net; host mount namespace)
                     Pods: cni0 bridge, pod_cidr; hostNetwork Pods share the node namespace
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from labnode import certs, config, system
from labnode.image import REPO, pause_archive
from labnode.spec import NodeSpec

BIN = REPO / "bin"
NODE_BIN = BIN / "trellis-node"
GUARD_CHAIN = "TRELLIS-EGRESS"


class NodeError(RuntimeError):
    pass


def _wait(what: str, check: Callable[[], bool], deadline: float, interval: float = 0.2) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(interval)
    raise NodeError(f"{what}: not done within {deadline:.0f}s")


class Node:
    """One node: ``up()`` runs the actions in order; ``down()`` undoes all of them."""

    def __init__(self, spec: NodeSpec, kubeconfig: Path) -> None:
        self.spec = spec
        self.kubeconfig = kubeconfig  # admin credentials: readiness checks and teardown drain
        self.pids: dict[str, int] = {}
        self.timings: dict[str, float] = {}

    # -- state on disk, so a later process can tear down ------------------------------------
    @property
    def state_file(self) -> Path:
        return self.spec.dir / "state.json"

    def _save(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "spec": json.loads(self.spec.to_json()),
                    "kubeconfig": str(self.kubeconfig),
                    "pids": self.pids,
                }
            )
        )

    @classmethod
    def load(cls, node_dir: Path) -> Node:
        state = json.loads((node_dir / "state.json").read_text())
        node = cls(NodeSpec.from_json(json.dumps(state["spec"])), Path(state["kubeconfig"]))
        node.pids = {k: int(v) for k, v in state["pids"].items()}
        return node

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return system.run([str(BIN / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args], check, timeout)

    def _start(self, role: str, argv: list[str]) -> None:
        log = open(self.spec.logs / f"{role}.log", "ab")  # noqa: SIM115 - the child owns it
        with log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # fmt: skip
        self.pids[role] = proc.pid
        self._save()

    def _running(self, role: str) -> bool:
        if not system.alive(self.pids[role]):
            tail = (self.spec.logs / f"{role}.log").read_text(errors="replace")[-3000:]
            raise NodeError(f"{role} exited; end of {self.spec.logs / role}.log:\n{tail}")
        return True

    # -- bring-up -----------------------------------------------------------------------------
    def actions(self) -> list[tuple[str, Callable[[], object], float]]:
        return [
            ("credentials", self._credentials, 10),
            ("network", self._network, 10),
            ("cgroup", lambda: system.make_cgroup(self.spec.cgroup), 5),
            ("apiserver relay", self._relay, 10),
            ("containerd", self._containerd, 20),
            ("pause image", lambda: self.import_image(pause_archive()), 60),
            ("cni", self._cni, 5),
            ("kubelet", self._kubelet, 30),
            ("kube-proxy", self._kube_proxy, 20),
            ("node.json", self._node_json, 10),
        ]

    def up(self, retain: bool = False) -> None:
        s = self.spec
        if self.state_file.exists():
            raise NodeError(f"{s.dir} holds a node already: `python -m labnode down --dir {s.dir}` first")
        for d in (s.dir, s.logs, s.dir / "certs", s.cni_conf_dir, s.containerd_root, s.containerd_state):
            d.mkdir(parents=True, exist_ok=True)
        self._save()
        for name, action, deadline in self.actions():
            started = time.monotonic()
            try:
                action()
            except Exception as exc:
                if not retain:
                    self.down()
                raise NodeError(f"node {s.name}: {name} failed: {exc}\n(logs: {s.logs})") from exc
            self.timings[name] = round(time.monotonic() - started, 2)
            if self.timings[name] > deadline:
                if not retain:
                    self.down()
                raise NodeError(f"node {s.name}: {name} took {self.timings[name]}s, deadline {deadline}s")

    def _credentials(self) -> None:
        s, d = self.spec, self.spec.dir / "certs"
        crt, key = certs.issue(s.ca, s.ca_key, d / "kubelet", f"system:node:{s.name}", ("system:nodes",))
        (s.dir / "kubelet.kubeconfig").write_text(config.kubeconfig(s, "kubelet", crt, key))
        certs.issue(
            s.ca, s.ca_key, d / "kubelet-serving", f"system:node:{s.name}", ("system:nodes",), (s.node_ip,)
        )
        crt, key = certs.issue(s.ca, s.ca_key, d / "kube-proxy", "system:kube-proxy")
        (s.dir / "kube-proxy.kubeconfig").write_text(config.kubeconfig(s, "kube-proxy", crt, key))

    def _network(self) -> None:
        s = self.spec
        guard = [
            # Nothing leaves the node namespace except to the host end of the veth.
            f"-N {GUARD_CHAIN}",
            f"-A {GUARD_CHAIN} -d {s.host_ip}/32 -j RETURN",
            f"-A {GUARD_CHAIN} -j REJECT",
            f"-A OUTPUT -o eth0 -j {GUARD_CHAIN}",
            f"-A FORWARD -o eth0 -j {GUARD_CHAIN}",
        ]
        system.setup_network(s.netns, s.host_if, s.host_ip, s.node_ip, s.prefix, guard)
        # hostNetwork Pods connect() to Service IPs before kube-proxy's DNAT: they need a route.
        system.run(["ip", "-n", s.netns, "route", "add", s.service_cidr, "via", s.host_ip])

    def _relay(self) -> None:
        s = self.spec
        relay = [f"--listen={s.host_ip}:{s.server_port}", f"--to=127.0.0.1:{s.server_port}"]
        self._start("apiserver-relay", [str(NODE_BIN), "forward", *relay])

        def listening() -> bool:
            self._running("apiserver-relay")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                return sock.connect_ex((s.host_ip, s.server_port)) == 0

        _wait("apiserver relay", listening, 10)

    def _containerd(self) -> None:
        s = self.spec
        cfg = s.dir / "containerd.toml"
        cfg.write_text(config.containerd_toml(s))
        self._start("containerd", system.in_netns(s.netns, ["containerd", "--config", str(cfg)]))

        def serving() -> bool:
            self._running("containerd")
            return s.containerd_socket.exists() and self._ctr("version", check=False).returncode == 0

        _wait("containerd socket", serving, 20)

    def _ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return system.run(
            ["ctr", "--address", str(self.spec.containerd_socket), "-n", "k8s.io", *args], check, timeout
        )

    def import_image(self, archive: Path) -> str:
        """Import an OCI archive (``oci-archive:``, e.g. build/images/<name>.tar) into the node's
        containerd, unpacked for overlayfs; Pods use it with ``imagePullPolicy: Never``."""
        return self._ctr("images", "import", "--snapshotter", "overlayfs", str(archive), timeout=300).stdout

    def _cni(self) -> None:
        (self.spec.cni_conf_dir / "10-trellis-lab.conflist").write_text(config.cni_conflist(self.spec))

    def _kubelet(self) -> None:
        s = self.spec
        cfg = s.dir / "kubelet.yaml"
        cfg.write_text(config.kubelet_yaml(s, s.dir / "certs"))
        self._start("kubelet", system.in_netns(s.netns, [
            str(NODE_BIN), "kubelet", f"--config={cfg}", f"--kubeconfig={s.dir / 'kubelet.kubeconfig'}",
            f"--root-dir={s.kubelet_dir}", f"--hostname-override={s.name}", f"--node-ip={s.node_ip}", "--v=1",
        ]))  # fmt: skip

        def ready() -> bool:
            self._running("kubelet")
            ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
            out = self.kubectl("get", "node", s.name, "-o", ready, check=False)
            return out.stdout.strip() == "True"

        _wait(f"node {s.name} Ready", ready, 30, interval=0.3)

    def restart_kubelet(self) -> None:
        """Stop kubelet and start it again, as a kubelet upgrade or crash does. Pods keep running
        (containerd owns them); returns once the node reports Ready again."""
        system.stop([self.pids["kubelet"]])
        self._kubelet()

    def _kube_proxy(self) -> None:
        s = self.spec
        cfg = s.dir / "kube-proxy.yaml"
        cfg.write_text(config.kube_proxy_yaml(s, s.dir / "kube-proxy.kubeconfig"))
        self._start(
            "kube-proxy", system.in_netns(s.netns, [str(NODE_BIN), "kube-proxy", f"--config={cfg}", "--v=1"])
        )

        def synced() -> bool:
            self._running("kube-proxy")
            rules = system.run(system.in_netns(s.netns, ["iptables-save", "-t", "nat"]), check=False).stdout
            return "KUBE-SVC-" in rules

        _wait("kube-proxy Service rules", synced, 20)

    def _node_json(self) -> None:
        self.spec.dir.joinpath("node.json").write_text(json.dumps(self.info(), indent=2) + "\n")

    def info(self) -> dict[str, object]:
        s = self.spec
        return {
            "name": s.name,
            "node_ip": s.node_ip,
            "host_ip": s.host_ip,
            "pod_cidr": s.pod_cidr,
            "service_cidr": s.service_cidr,
            "netns": s.netns,
            "host_interface": s.host_if,
            "kubelet_root_dir": str(s.kubelet_dir),
            "containerd_socket": str(s.containerd_socket),
            "kubeconfig": str(self.kubeconfig),
            "logs": {p.stem: str(p) for p in sorted(s.logs.glob("*.log"))},
            "versions": versions(),
            "timings": self.timings,
        }

    # -- teardown -----------------------------------------------------------------------------
    def down(self, drain_deadline: float = 15) -> list[str]:
        """Stop everything and remove every trace; returns what is left (empty when clean)."""
        s = self.spec
        if drain_deadline and "kubelet" in self.pids and system.alive(self.pids["kubelet"]):
            self._drain(drain_deadline)
        system.stop([self.pids[r] for r in ("kubelet", "kube-proxy") if r in self.pids])
        if "containerd" in self.pids and system.alive(self.pids["containerd"]):
            tasks = self._ctr("tasks", "ls", "-q", check=False, timeout=10).stdout.split()
            for task in tasks:
                self._ctr("tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=10)
        system.stop(system.cgroup_pids(s.cgroup), grace=0)
        system.stop([self.pids["containerd"]] if "containerd" in self.pids else [])
        system.stop(system.pids_with_arg(str(s.containerd_socket)), grace=2)
        system.unmount_all([s.kubelet_dir, s.containerd_root, s.containerd_state])
        system.remove_cgroup(s.cgroup)
        system.stop([self.pids["apiserver-relay"]] if "apiserver-relay" in self.pids else [])
        system.teardown_network(s.netns, s.host_if)
        if self.kubeconfig.exists():
            self.kubectl(
                "delete", "node", s.name, "--ignore-not-found", "--wait=false", check=False, timeout=10
            )
        left = leftovers(s)
        if not left:
            for path in (s.kubelet_dir, s.containerd_root.parent, s.dir / "cni"):
                shutil.rmtree(path, ignore_errors=True)
            self.state_file.unlink(missing_ok=True)
        return left

    def _drain(self, deadline: float) -> None:
        """Evict every Pod through the kubelet, so volumes are unmounted the proper way first."""
        s = self.spec
        taint = "trellis.io/teardown=true:NoExecute"
        if self.kubectl("taint", "node", s.name, taint, "--overwrite", check=False, timeout=10).returncode:
            return

        def empty() -> bool:
            mine = f"spec.nodeName={s.name}"
            out = self.kubectl("get", "pods", "-A", "--field-selector", mine, "-o", "name", check=False)
            return out.returncode == 0 and not out.stdout.strip()

        # What is still mounted after the deadline is unmounted by down().
        with contextlib.suppress(NodeError):
            _wait("drain", empty, deadline, interval=0.5)


def leftovers(spec: NodeSpec) -> list[str]:
    """Everything of this node still on the machine: processes, mounts, cgroups, links, namespace."""
    left = [
        f"mount {m}"
        for m in system.mounts_under([spec.kubelet_dir, spec.containerd_root, spec.containerd_state])
    ]
    left += [f"process {p} (containerd shim)" for p in system.pids_with_arg(str(spec.containerd_socket))]
    left += [f"process {p} (node)" for p in system.pids_with_arg(str(spec.dir / "kubelet.yaml"))]
    left += [f"process {p} (in cgroup)" for p in system.cgroup_pids(spec.cgroup)]
    left += [f"cgroup {d}" for d in system.cgroup_dirs(spec.cgroup)]
    if system.netns_exists(spec.netns):
        left.append(f"netns {spec.netns}")
    if system.link_exists(spec.host_if):
        left.append(f"link {spec.host_if}")
    host_rules = system.run(["iptables-save"], check=False).stdout
    if spec.host_if in host_rules or spec.netns in host_rules:
        left.append("iptables rules on the host")
    return left


def versions() -> dict[str, str]:
    def first(argv: Iterable[str]) -> str:
        try:
            out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
        except OSError as exc:
            return f"unavailable: {exc}"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"
        )

    return {
        "kubelet": first([str(NODE_BIN), "kubelet", "--version"]),
        "containerd": first(["containerd", "--version"]),
        "runc": first(["runc", "--version"]),
        "cni-plugins": first(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"]),
        "iptables": first(["iptables", "--version"]),
    }
