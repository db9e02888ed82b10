"""Prometheus metrics of the driver (``--metrics-address``, path ``/metrics``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from trellis.routeros.ssh import PoolStats

REGISTRY = CollectorRegistry(auto_describe=True)
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

OPERATIONS = Counter(
    "trellis_csi_operations_total",
    "CSI calls by method and resulting gRPC code.",
    ["method", "code"],
    registry=REGISTRY,
)
OPERATION_SECONDS = Histogram(
    "trellis_csi_operation_duration_seconds",
    "Duration of CSI calls by method.",
    ["method"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
ROUTEROS_COMMANDS = Counter(
    "trellis_csi_routeros_commands_total",
    "RouterOS commands sent over SSH by outcome (ok, transport-error, timeout).",
    ["outcome"],
    registry=REGISTRY,
)
ROUTEROS_SECONDS = Histogram(
    "trellis_csi_routeros_command_duration_seconds",
    "Duration of single RouterOS command attempts.",
    buckets=_BUCKETS,
    registry=REGISTRY,
)
NODE_OPERATIONS = Counter(
    "trellis_csi_node_attach_operations_total",
    "Node attach/detach/format/mount steps by transport, step and result.",
    ["transport", "step", "result"],
    registry=REGISTRY,
)

KUBELET_REGISTRATIONS = Counter(
    "trellis_csi_kubelet_registration_notifications_total",
    "Registration statuses kubelet reported to the node plugin, by result (registered, failed).",
    ["result"],
    registry=REGISTRY,
)
KUBELET_REGISTERED = Gauge(
    "trellis_csi_kubelet_registered",
    "1 once kubelet reported this node plugin registered; 0 before that (or with registration off).",
    registry=REGISTRY,
)


def observe_routeros(outcome: str, seconds: float) -> None:
    ROUTEROS_COMMANDS.labels(outcome).inc()
    ROUTEROS_SECONDS.observe(seconds)


class PoolCollector(Collector):
    """SSH pool state, read from the pool at scrape time."""

    def __init__(self, stats: Callable[[], PoolStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._stats()
        gauges = {
            "size": ("Configured SSH connections.", s.size),
            "connected": ("Open SSH connections.", s.connected),
            "busy": ("SSH connections running a command.", s.busy),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"trellis_csi_ssh_pool_{name}", doc, value=value)
        counters = {
            "connects": ("SSH connections opened.", s.connects),
            "failed_connects": ("SSH connection attempts that failed.", s.failed_connects),
            "retries": ("RouterOS commands retried after transport errors.", s.retries),
        }
        for name, (doc, value) in counters.items():
            yield GaugeMetricFamily(f"trellis_csi_ssh_{name}", doc, value=value)


def watch_pool(stats: Callable[[], PoolStats]) -> None:
    REGISTRY.register(PoolCollector(stats))


def serve(address: str, healthy: Callable[[], bool] | None = None) -> None:
    """Serve ``/metrics`` and, given ``healthy``, ``/healthz`` on ``host:port`` (``:port``: all
    interfaces). ``/healthz`` answers 200 when ``healthy()`` is true and 503 otherwise, so kubelet's
    liveness probe needs no livenessprobe sidecar (an image that cannot always be had)."""
    host, _, port = address.rpartition(":")
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/healthz" and healthy is not None:
            ok = healthy()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ready\n"]
        return metrics_app(environ, start_response)

    server = make_server(host or "0.0.0.0", int(port), app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the JSON log; requests are not logged."""
