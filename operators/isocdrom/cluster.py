"""Kubernetes side of the ISOCDROM operator: Router lookup, credentials, hosts, status (synchronous)."""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trellis import GROUP, VERSION
from trellis.routeros.cli import RouterOSCli
from trellis.routeros.ssh import SSHConfig, SSHPool


class ConfigProblem(Exception):
    """Something the user must fix (missing Router, Secret, host key); becomes a condition + Event."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class RouterAccess:
    name: str
    ssh: SSHConfig
    portal_address: str
    lun: int = 0


class Cluster:
    def __init__(self, api: client.ApiClient, operator_namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = operator_namespace

    def _secret(self, namespace: str | None, name: str) -> dict[str, str]:
        try:
            secret = self.core.read_namespaced_secret(name, namespace or self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigProblem(
                    "SecretNotFound", f"Secret {namespace or self.namespace}/{name} not found"
                ) from exc
            raise
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()}

    def router_access(self, router_name: str) -> RouterAccess:
        try:
            router: dict[str, Any] = self.custom.get_cluster_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, "routers", router_name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigProblem("RouterNotFound", f"Router {router_name} not found") from exc
            raise
        spec = router.get("spec") or {}
        creds_ref = spec.get("credentialsSecretRef") or {}
        creds = self._secret(creds_ref.get("namespace"), creds_ref.get("name", ""))
        host_key = spec.get("sshHostKey") or {}
        known_hosts = host_key.get("knownHosts")
        if not known_hosts and host_key.get("secretRef"):
            ref = host_key["secretRef"]
            known_hosts = self._secret(ref.get("namespace"), ref["name"]).get(ref["key"])
        if not known_hosts:
            raise ConfigProblem(
                "SSHHostKeyNotPinned", f"Router {router_name} has no sshHostKey: SSH and SFTP are refused"
            )
        if not creds.get("username") or not (creds.get("password") or creds.get("ssh-privatekey")):
            raise ConfigProblem(
                "InvalidCredentials", f"Router {router_name}'s credentials Secret lacks username and password"
            )
        address = str(spec.get("address", ""))
        try:
            config = SSHConfig(
                host=address,
                port=int(spec.get("sshPort", 22)),
                username=creds["username"],
                password=creds.get("password") or None,
                private_key=creds.get("ssh-privatekey") or None,
                known_hosts=known_hosts,
                pool_size=2,
            )
        except ValueError as exc:
            raise ConfigProblem("InvalidCredentials", str(exc)) from exc
        return RouterAccess(router_name, config, portal_address(address), int(spec.get("iscsiLun", 0)))

    def baremetalhosts(self) -> list[dict[str, Any]]:
        result: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, "baremetalhosts")
        return list(result.get("items", []))

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        if status:
            self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, "isocdroms", name, {"status": status}
            )


def portal_address(address: str) -> str:
    """The iSCSI portal as an IP (status.portalAddress); DNS names are resolved."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError:
        return ""


class CliCache:
    """One persistent SSH pool per Router configuration, shared by all ISOCDROMs on it."""

    def __init__(self) -> None:
        self._pools: dict[str, tuple[SSHConfig, SSHPool]] = {}
        self._lock = threading.Lock()

    def cli(self, access: RouterAccess) -> RouterOSCli:
        with self._lock:
            known = self._pools.get(access.name)
            if known is not None and known[0] != access.ssh:
                known[1].close()
                known = None
            if known is None:
                known = (access.ssh, SSHPool(access.ssh))
                self._pools[access.name] = known
            return RouterOSCli(known[1])
