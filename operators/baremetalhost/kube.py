"""Kubernetes reads and writes of the operator, awaited from the event loop.

The official client is synchronous, so every call runs in a small thread pool of its own (BMC
work never waits behind it, and it never blocks kopf's loop).
"""

from __future__ import annotations

import base64
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trellis import GROUP
from trellis.operators.baremetalhost.reservations import HOST_LABEL
from trellis.opkit.kube import ThreadedKube

VERSION = "v1alpha1"
HOSTS = "baremetalhosts"
RESERVATIONS = "dhcpreservations"
T = TypeVar("T")


class SecretProblem(Exception):
    """The credentials Secret is missing or lacks username/password."""


class Kube(ThreadedKube):
    # -- reads -------------------------------------------------------------------------------------
    async def credentials(self, namespace: str, name: str) -> tuple[str, str, str]:
        """(username, password, resourceVersion) from the Secret."""
        try:
            secret = await self._run(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretProblem(f"credentials Secret {name} not found") from None
            raise
        data = secret.data or {}
        missing = [k for k in ("username", "password") if not data.get(k)]
        if missing:
            raise SecretProblem(f"credentials Secret {name} has no {' or '.join(missing)}")
        user = base64.b64decode(data["username"]).decode()
        password = base64.b64decode(data["password"]).decode()
        version = secret.metadata.resource_version if secret.metadata else ""
        return user, password, str(version)

    async def get_cluster_object(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            result = await self._run(self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name)
            return cast(dict[str, Any], result)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def talos_devices(self, namespace: str) -> list[dict[str, Any]]:
        try:
            listed: Any = await self._run(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "talosdevices"
            )
        except ApiException as exc:
            if exc.status == 404:  # no TalosDevice CRD: no host is linked
                return []
            raise
        return list(listed.get("items", []))

    async def reservations_of(self, namespace: str, host: str, names: list[str]) -> list[dict[str, Any]]:
        """Reservations labelled for ``host`` plus any object holding one of ``names``."""
        listed: Any = await self._run(
            self.custom.list_namespaced_custom_object,
            GROUP, VERSION, namespace, RESERVATIONS, label_selector=f"{HOST_LABEL}={host}",
        )  # fmt: skip
        found = {o["metadata"]["name"]: o for o in listed.get("items", [])}
        for name in names:
            if name in found:
                continue
            try:
                found[name] = await self._run(
                    self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, RESERVATIONS, name
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return list(found.values())

    # -- writes ------------------------------------------------------------------------------------
    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._run(
            self.custom.patch_namespaced_custom_object_status,
            GROUP, VERSION, namespace, HOSTS, name, {"status": status},
        )  # fmt: skip

    async def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        await self._run(
            self.custom.patch_namespaced_custom_object,
            GROUP, VERSION, namespace, HOSTS, name, {"metadata": {"annotations": annotations}},
        )  # fmt: skip

    async def create_host(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        made: Any = await self._run(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, HOSTS, body
        )
        return cast(dict[str, Any], made)

    async def create_reservation(self, namespace: str, body: dict[str, Any]) -> None:
        await self._run(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, RESERVATIONS, body
        )

    async def replace_reservation_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        live: Any = await self._run(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, RESERVATIONS, name
        )
        live["spec"] = spec
        await self._run(
            self.custom.replace_namespaced_custom_object, GROUP, VERSION, namespace, RESERVATIONS, name, live
        )

    async def delete_reservation(self, namespace: str, name: str, uid: str | None = None) -> None:
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None)
        try:
            await self._run(
                self.custom.delete_namespaced_custom_object,
                GROUP, VERSION, namespace, RESERVATIONS, name, body=body,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
