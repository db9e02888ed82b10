"""A dnsmasq-served Network is Ready only once a ready Pod runs its current config."""

from __future__ import annotations

from types import SimpleNamespace as NS

from trellis.operators.network.backends import _not_rolled_out
from trellis.operators.network.workload import SPEC_HASH_ANNOTATION

HASH = "abc123"


def deployment(
    hash_: str = HASH,
    generation: int = 2,
    observed: int = 2,
    replicas: int = 1,
    updated: int = 1,
    ready: int = 1,
    total: int = 1,
) -> NS:
    return NS(
        metadata=NS(annotations={SPEC_HASH_ANNOTATION: hash_}, generation=generation),
        spec=NS(replicas=replicas),
        status=NS(
            observed_generation=observed, updated_replicas=updated, ready_replicas=ready, replicas=total
        ),
    )


def test_a_ready_pod_with_the_current_config_is_served() -> None:
    assert _not_rolled_out(deployment(), HASH) == ""


def test_anything_short_of_that_says_what_it_waits_for() -> None:
    assert _not_rolled_out(None, HASH) == "no Deployment yet"
    assert "older config" in _not_rolled_out(deployment(hash_="old"), HASH)
    assert "not seen" in _not_rolled_out(deployment(observed=1), HASH)
    # Recreate strategy: the new Pod exists but dnsmasq has not bound its ports yet.
    assert _not_rolled_out(deployment(ready=0), HASH) == "0/1 Pods with this config ready"
    # A Pod that cannot be scheduled (no such node) never becomes ready.
    assert _not_rolled_out(deployment(updated=1, ready=0), HASH) == "0/1 Pods with this config ready"
    assert "older config is still running" in _not_rolled_out(deployment(total=2), HASH)


def test_a_deployment_without_status_is_not_served() -> None:
    dep = deployment()
    dep.status = None
    assert "not seen" in _not_rolled_out(dep, HASH)
