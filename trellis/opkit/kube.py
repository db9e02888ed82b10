"""The Kubernetes client every operator uses: configured once, called off the event loop.

The official client is synchronous. Operators await its calls through a thread pool of their own
so kopf's loop never waits on a socket, and slow device work never queues behind API calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes import config as k8s_config

T = TypeVar("T")


def api_client(pool_size: int | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a Pod, the kubeconfig otherwise."""
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    if pool_size:
        configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class ThreadedKube:
    """Base for an operator's Kubernetes layer: typed APIs plus ``await self._run(fn, ...)``."""

    def __init__(self, api: client.ApiClient | None = None, workers: int = 8) -> None:
        api = api or api_client(pool_size=workers)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="kube")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
