"""The boot service's view of the cluster: watched objects in memory, and batched status writes.

Requests are answered from memory (no API round trip on the hot path); watch threads keep the
maps current and the service reports ready only once every watch has listed its objects.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from trellis import GROUP, VERSION
from trellis.api.common import normalize_mac
from trellis.operators.talosdevice.kube import CLUSTERS, DEVICES, LABEL_CLUSTER, Kube

log = logging.getLogger(__name__)
Key = tuple[str, str]


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return (str(meta.get("namespace", "")), str(meta["name"]))


@dataclass
class Store:
    clusters: dict[Key, dict[str, Any]] = field(default_factory=dict)
    devices: dict[Key, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[Key, dict[str, Any]] = field(default_factory=dict)
    configmaps: dict[Key, dict[str, Any]] = field(default_factory=dict)
    by_mac: dict[str, set[Key]] = field(default_factory=dict)
    synced: set[str] = field(default_factory=set)

    def _table(self, kind: str) -> dict[Key, dict[str, Any]]:
        return {"clusters": self.clusters, "devices": self.devices, "secrets": self.secrets}.get(
            kind, self.configmaps
        )

    def _index(self, key: Key, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        if old is not None:
            mac = normalize_mac((old.get("spec") or {}).get("mac", ""))
            self.by_mac.get(mac, set()).discard(key)
        if new is not None:
            mac = normalize_mac((new.get("spec") or {}).get("mac", ""))
            self.by_mac.setdefault(mac, set()).add(key)

    def replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        table = self._table(kind)
        if kind == "devices":
            self.by_mac.clear()
        table.clear()
        for obj in items:
            self.apply(kind, "ADDED", obj)
        self.synced.add(kind)

    def apply(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        table, key = self._table(kind), key_of(obj)
        old = table.get(key)
        if event == "DELETED":
            table.pop(key, None)
            if kind == "devices":
                self._index(key, old, None)
            return
        table[key] = obj
        if kind == "devices":
            self._index(key, old, obj)

    def devices_with_mac(self, mac: str) -> list[dict[str, Any]]:
        return [self.devices[k] for k in sorted(self.by_mac.get(mac, ())) if k in self.devices]


class Reflector(threading.Thread):
    """List, then watch one kind; replays into the store on the event loop's thread."""

    def __init__(
        self,
        kind: str,
        list_fn: Callable[..., Any],
        kwargs: dict[str, Any],
        store: Store,
        loop: asyncio.AbstractEventLoop,
        kube: Kube,
    ) -> None:
        super().__init__(name=f"reflector-{kind}", daemon=True)
        self.kind, self.list_fn, self.kwargs = kind, list_fn, kwargs
        self.store, self.loop, self.kube = store, loop, kube
        self.stopping = threading.Event()

    def _plain(self, obj: Any) -> dict[str, Any]:
        return obj if isinstance(obj, dict) else self.kube._plain(obj)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                listed = self._plain(self.list_fn(**self.kwargs))
                items = listed.get("items") or []
                for item in items:
                    item.setdefault("metadata", {})
                version = listed.get("metadata", {}).get("resourceVersion")
                self.loop.call_soon_threadsafe(self.store.replace, self.kind, items)
                stream = watch.Watch()
                for event in stream.stream(
                    self.list_fn, resource_version=version, timeout_seconds=60, **self.kwargs
                ):
                    if self.stopping.is_set():
                        stream.stop()
                        return
                    kind, obj = event["type"], event.get("raw_object") or self._plain(event["object"])
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.loop.call_soon_threadsafe(self.store.apply, self.kind, kind, obj)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch of %s failed (%s); relisting", self.kind, exc.reason)
                    time.sleep(1)
            except Exception as exc:  # network errors: relist after a pause
                if self.stopping.is_set():
                    return
                log.warning("watch of %s failed (%s); relisting", self.kind, exc)
                time.sleep(1)


def start_reflectors(
    kube: Kube, store: Store, namespace: str | None, loop: asyncio.AbstractEventLoop
) -> list[Reflector]:
    selector = LABEL_CLUSTER
    if namespace:
        specs = [
            (
                "clusters",
                kube.custom.list_namespaced_custom_object,
                {"group": GROUP, "version": VERSION, "namespace": namespace, "plural": CLUSTERS},
            ),
            (
                "devices",
                kube.custom.list_namespaced_custom_object,
                {"group": GROUP, "version": VERSION, "namespace": namespace, "plural": DEVICES},
            ),
            (
                "secrets",
                kube.core.list_namespaced_secret,
                {"namespace": namespace, "label_selector": selector},
            ),
            (
                "configmaps",
                kube.core.list_namespaced_config_map,
                {"namespace": namespace, "label_selector": selector},
            ),
        ]
    else:
        specs = [
            (
                "clusters",
                kube.custom.list_cluster_custom_object,
                {"group": GROUP, "version": VERSION, "plural": CLUSTERS},
            ),
            (
                "devices",
                kube.custom.list_cluster_custom_object,
                {"group": GROUP, "version": VERSION, "plural": DEVICES},
            ),
            ("secrets", kube.core.list_secret_for_all_namespaces, {"label_selector": selector}),
            ("configmaps", kube.core.list_config_map_for_all_namespaces, {"label_selector": selector}),
        ]
    reflectors = [Reflector(kind, fn, kw, store, loop, kube) for kind, fn, kw in specs]  # type: ignore[arg-type]
    for r in reflectors:
        r.start()
    return reflectors


class StatusWriter:
    """Merges status updates per device and writes them in the background, one write per device."""

    def __init__(self, kube: Kube, interval: float = 0.05) -> None:
        self.kube, self.interval = kube, interval
        self.pending: dict[Key, dict[str, Any]] = {}
        self.wake = asyncio.Event()
        self.writes = 0

    def update(self, key: Key, status: Mapping[str, Any]) -> None:
        merged = self.pending.setdefault(key, {})
        for name, value in status.items():
            if isinstance(value, dict) and isinstance(merged.get(name), dict):
                merged[name] = {**merged[name], **value}
            else:
                merged[name] = value
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(self.interval)
            self.wake.clear()
            batch, self.pending = self.pending, {}
            await asyncio.gather(*(self._write(key, status) for key, status in batch.items()))

    async def _write(self, key: Key, status: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.kube.patch_status, DEVICES, key[0], key[1], status)
            self.writes += 1
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status write for %s/%s failed: %s", key[0], key[1], exc.reason)
