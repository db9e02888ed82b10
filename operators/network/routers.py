"""Router objects: how to reach them (endpoint from spec + Secrets) and the status probe."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from trellis.api.router import RouterSpec
from trellis.operators.network.kube import Kube
from trellis.opkit.conditions import now_rfc3339, set_condition, without_times
from trellis.routeros.api import Endpoint, RouterClients, RouterError, RouterLoginFailed, Session

ENDPOINT_TTL = 30.0  # Secrets are not watched: re-read credentials this often
HEARTBEAT = 600.0  # refresh lastProbeTime at least this often even when nothing changed


class EndpointProblem(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Endpoints:
    """Router name -> Endpoint, cached briefly; Router events invalidate an entry."""

    kube: Kube
    operator_namespace: str

    def __post_init__(self) -> None:
        self._cache: dict[str, tuple[float, Endpoint]] = {}

    def invalidate(self, name: str) -> None:
        self._cache.pop(name, None)

    async def get(self, name: str, router: dict[str, Any] | None = None) -> Endpoint:
        cached = self._cache.get(name)
        if cached and time.monotonic() - cached[0] < ENDPOINT_TTL and router is None:
            return cached[1]
        if router is None:
            router = await self.kube.get_cluster("routers", name)
        if router is None:
            raise EndpointProblem("RouterNotFound", f"Router {name} does not exist")
        try:
            spec = RouterSpec.model_validate(router.get("spec") or {})
        except ValidationError as exc:
            raise EndpointProblem("InvalidRouter", f"Router {name}: {exc.errors()[0]['msg']}") from None
        ref = spec.credentials_secret_ref
        namespace = ref.namespace or self.operator_namespace
        data = await self.kube.secret_data(namespace, ref.name)
        if data is None:
            raise EndpointProblem("CredentialsMissing", f"Secret {namespace}/{ref.name} does not exist")
        if not data.get("username") or "password" not in data:
            raise EndpointProblem(
                "CredentialsMissing", f"Secret {namespace}/{ref.name} needs username and password"
            )
        tls = spec.api_tls if spec.api_tls and spec.api_tls.enabled else None
        ca_pem = None
        if tls and tls.ca_secret_ref:
            ca_ref = tls.ca_secret_ref
            ca_ns = ca_ref.namespace or self.operator_namespace
            ca_data = await self.kube.secret_data(ca_ns, ca_ref.name)
            if not ca_data or not ca_data.get(ca_ref.key):
                raise EndpointProblem("CAMissing", f"Secret {ca_ns}/{ca_ref.name} has no key {ca_ref.key}")
            ca_pem = ca_data[ca_ref.key]
        endpoint = Endpoint(
            host=spec.address,
            username=data["username"],
            password=data["password"],
            port=tls.port if tls else spec.api_port,
            tls=tls is not None,
            ca_pem=ca_pem,
            server_name=tls.server_name if tls else None,
            verify=not (tls and tls.insecure_skip_verify),
        )
        self._cache[name] = (time.monotonic(), endpoint)
        return endpoint


def _identify(sess: Session) -> dict[str, str]:
    resource = sess.print("/system/resource")
    identity = sess.print("/system/identity")
    res = resource[0] if resource else {}
    return {
        "version": res.get("version", ""),
        "board": res.get("board-name", ""),
        "identity": identity[0].get("name", "") if identity else "",
    }


async def probe(
    name: str,
    router: dict[str, Any],
    endpoints: Endpoints,
    clients: RouterClients,
    kube: Kube,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> bool:
    """Check one Router and write its status if anything changed; True if reachable."""
    old = router.get("status") or {}
    generation = router.get("metadata", {}).get("generation")
    status: dict[str, Any] = {}
    try:
        endpoint = await endpoints.get(name, router)
        facts = await clients.get(name, endpoint).run(_identify)
    except EndpointProblem as exc:
        reason, message, reachable = exc.reason, exc.message, False
    except RouterLoginFailed as exc:
        reason, message, reachable = "LoginFailed", str(exc), False
    except RouterError as exc:
        reason, message, reachable = "Unreachable", str(exc), False
    else:
        reason, message, reachable = "Reachable", f"RouterOS {facts['version']} ({facts['identity']})", True
        status.update(routerOSVersion=facts["version"], identity=facts["identity"], boardName=facts["board"])
    status["reachable"] = reachable
    status["lastError"] = "" if reachable else message
    status["observedGeneration"] = generation
    status["conditions"] = set_condition(
        old.get("conditions"), "Ready", reachable, reason, message, generation
    )
    changed = any(old.get(k) != v for k, v in status.items() if k != "conditions") or without_times(
        old.get("conditions")
    ) != without_times(status["conditions"])
    stale = _age(old.get("lastProbeTime")) > HEARTBEAT
    if changed or stale:
        status["lastProbeTime"] = now_rfc3339()
        await kube.patch_router_status(name, status)
        if changed and not reachable:
            logger.warning("Router %s: %s", name, message)
    return reachable


def _age(stamp: str | None) -> float:
    if not stamp:
        return float("inf")
    import datetime as dt

    try:
        then = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (dt.datetime.now(dt.UTC) - then).total_seconds()
