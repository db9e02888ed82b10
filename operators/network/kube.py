"""Kubernetes reads and writes of the network operator, awaited from the event loop.

The official client is synchronous; every call runs in this module's thread pool so kopf's
loop never waits on a socket. Status writes are JSON merge patches; the Network's carries its
resourceVersion, which makes the IPAM record a compare-and-set (409 if someone wrote first).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar, cast

from kubernetes.client.exceptions import ApiException

from trellis import GROUP, VERSION
from trellis.opkit.kube import ThreadedKube

T = TypeVar("T")
NETWORKS = "networks"
RESERVATIONS = "dhcpreservations"
ROUTERS = "routers"


class Conflict(Exception):
    """The object changed since we read it (HTTP 409): re-read and recompute."""


class Kube(ThreadedKube):
    def __init__(self, workers: int = 16) -> None:
        super().__init__(workers=workers)

    async def get_cluster(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self._run(self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name)
            return cast(dict[str, Any], obj)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_network_status(
        self, name: str, status: dict[str, Any], resource_version: str | None
    ) -> str:
        """Merge-patch status; with a resourceVersion the write fails with Conflict if stale."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            obj = await self._run(
                self.custom.patch_cluster_custom_object_status, GROUP, VERSION, NETWORKS, name, body
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"Network {name} changed while reconciling") from None
            raise
        return str(cast(dict[str, Any], obj)["metadata"]["resourceVersion"])

    async def patch_reservation_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            await self._run(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                RESERVATIONS,
                name,
                {"status": status},
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise

    async def patch_router_status(self, name: str, status: dict[str, Any]) -> None:
        await self._run(
            self.custom.patch_cluster_custom_object_status, GROUP, VERSION, ROUTERS, name, {"status": status}
        )

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = await self._run(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()}

    # -- the managed dnsmasq's objects ---------------------------------------------------------

    async def read_configmap(self, namespace: str, name: str) -> Any | None:
        return await self._read(self.core.read_namespaced_config_map, namespace, name)

    async def read_deployment(self, namespace: str, name: str) -> Any | None:
        return await self._read(self.apps.read_namespaced_deployment, namespace, name)

    async def _read(self, fn: Callable[..., Any], namespace: str, name: str) -> Any | None:
        try:
            return await self._run(fn, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def put_configmap(self, namespace: str, body: dict[str, Any], exists: bool) -> None:
        if exists:
            await self._run(
                self.core.replace_namespaced_config_map, body["metadata"]["name"], namespace, body
            )
        else:
            await self._run(self.core.create_namespaced_config_map, namespace, body)

    async def put_deployment(self, namespace: str, body: dict[str, Any], exists: bool) -> None:
        if exists:
            await self._run(
                self.apps.replace_namespaced_deployment, body["metadata"]["name"], namespace, body
            )
        else:
            await self._run(self.apps.create_namespaced_deployment, namespace, body)

    async def pod_logs(self, namespace: str, selector: str, container: str, since_seconds: int) -> str:
        """Recent log lines (with kubelet timestamps) of ``container`` in every Pod ``selector`` picks."""
        pods: Any = await self._run(self.core.list_namespaced_pod, namespace, label_selector=selector)
        chunks = []
        for pod in pods.items:
            if not pod.status or pod.status.phase not in ("Running", "Succeeded", "Failed"):
                continue
            try:
                text = await self._run(
                    self.core.read_namespaced_pod_log,
                    pod.metadata.name,
                    namespace,
                    container=container,
                    since_seconds=max(1, since_seconds),
                    timestamps=True,
                )
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or gone meanwhile
                    continue
                raise
            chunks.append(str(text))
        return "\n".join(chunks)

    async def delete_dnsmasq(self, namespace: str, name: str) -> bool:
        """Delete the Deployment and ConfigMap called ``name``; True if anything was there."""
        found = False
        for fn in (self.apps.delete_namespaced_deployment, self.core.delete_namespaced_config_map):
            try:
                await self._run(fn, name, namespace)
                found = True
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return found
