"""Prometheus metrics of the driver (``--metrics-address``, path ``/metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
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


def serve(address: str) -> None:
    """Serve ``/metrics`` on ``host:port`` (``:port`` for all interfaces)."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)
