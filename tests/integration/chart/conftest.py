"""The operators whose chart RBAC is checked, and the skip when a component is not there yet."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from tests.support.kube import REPO
from tests.support.rbac import CHART, ComponentRbac, component_rbac, render_chart

OPERATORS = ("network", "baremetalhost", "registry", "isocdrom", "talosdevice")


def chart_rbac(
    component: str,
    namespace: str,
    release: str = "trellis",
    sets: Iterable[str] = (),
    package: str | None = None,
) -> ComponentRbac:
    """The component's rendered ServiceAccount and grants; skips while the component is missing.

    ``package`` names the operators/ folder and chart template folder when they differ from the
    component label (the Talos boot service lives with the talosdevice operator).
    """
    package = package or component
    if not (REPO / "operators" / package / "handlers.py").exists():
        pytest.skip(f"operators/{package} has no handlers.py yet")
    if not (CHART / "templates" / package).is_dir():
        pytest.skip(f"operators/{package} has no chart RBAC yet (charts/trellis/templates/{package}/)")
    rbac = component_rbac(render_chart(namespace, release, sets), component, namespace)
    if rbac is None:
        pytest.skip(f"charts/trellis/templates/{package}/ renders no ServiceAccount for {component} yet")
    return rbac
