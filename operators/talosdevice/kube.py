"""Kubernetes access for the operator and the boot service (sync client; call it off the event loop)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from trellis import API_VERSION, GROUP, VERSION
from trellis.opkit.kube import api_client

log = logging.getLogger(__name__)

DEVICES = "talosdevices"
CLUSTERS = "talosclusters"
REGISTRIES = "registries"
LABEL_CLUSTER = "talos.trellis.dev/cluster"
LABEL_MAC = "talos.trellis.dev/mac"
LABEL_RULE = "talos.trellis.dev/approved-by-rule"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "trellis-talosdevice"


def mac_label(mac: str) -> str:
    return mac.lower().replace(":", "-")


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Kube:
    def __init__(self, api: k8s.ApiClient | None = None) -> None:
        self.api = api or api_client()
        self.custom = k8s.CustomObjectsApi(self.api)
        self.core = k8s.CoreV1Api(self.api)

    # --- Trellis objects ---------------------------------------------------------------------
    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_objects(self, plural: str, namespace: str | None, label_selector: str = "") -> dict[str, Any]:
        if namespace:
            return cast(
                dict[str, Any],
                self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, label_selector=label_selector
                ),
            )
        return cast(
            dict[str, Any],
            self.custom.list_cluster_custom_object(GROUP, VERSION, plural, label_selector=label_selector),
        )

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body),
        )

    def patch(self, plural: str, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """Merge patch (a dict) or JSON patch (a list, applied atomically by the apiserver)."""
        content = "application/json-patch+json" if isinstance(body, list) else "application/merge-patch+json"
        return cast(
            dict[str, Any],
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, body, _content_type=content
            ),
        )

    def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": dict(status)},
            _content_type="application/merge-patch+json",
        )

    def cluster_registries(self, label_selector: str) -> list[dict[str, Any]]:
        return list(self.list_objects(REGISTRIES, None, label_selector).get("items", []))

    # --- core objects ------------------------------------------------------------------------
    def _plain(self, obj: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.sanitize_for_serialization(obj))

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as a plain dict (data values still base64)."""
        try:
            return self._plain(self.core.read_namespaced_secret(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        self.core.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]

    def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.core.replace_namespaced_secret(name, namespace, body)  # type: ignore[arg-type]

    def patch_secret(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.core.patch_namespaced_secret(name, namespace, body)

    def namespace_terminating(self, namespace: str) -> bool:
        ns = self._plain(self.core.read_namespace(namespace))
        return bool(ns.get("metadata", {}).get("deletionTimestamp"))

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._plain(self.core.read_namespaced_config_map(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply_configmap(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        """Create or update; returns True when something was written."""
        current = self.get_configmap(namespace, name)
        if current is None:
            self.core.create_namespaced_config_map(namespace, body)  # type: ignore[arg-type]
            return True
        labels = current["metadata"].get("labels") or {}
        if (
            current.get("data", {}) == body.get("data", {})
            and labels.items() >= body["metadata"]["labels"].items()
        ):
            return False
        self.core.patch_namespaced_config_map(
            name, namespace, {"metadata": body["metadata"], "data": body["data"]}
        )
        return True

    def event(
        self,
        obj: Mapping[str, Any],
        reason: str,
        message: str,
        warning: bool = False,
        component: str = MANAGED_BY,
    ) -> None:
        meta = obj.get("metadata", {})
        stamp = now()
        body = {
            "metadata": {
                "generateName": f"{meta.get('name', 'object')}.",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", API_VERSION),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta.get("namespace"), body)  # type: ignore[arg-type]
        except ApiException as exc:
            log.warning("could not record event %s on %s: %s", reason, meta.get("name"), exc.reason)
