"""The operators whose chart RBAC is checked, and the skip when a component is not there yet."""

from __future__ import annotations

import pytest

from tests.support.kube import REPO
from tests.support.rbac import CHART, ComponentRbac, component_rbac, render_chart

OPERATORS = ("network", "baremetalhost", "registry", "isocdrom", "talosdevice")


def chart_rbac(component: str, namespace: str, release: str = "trellis") -> ComponentRbac:
    """The component's rendered ServiceAccount and grants; skips while the component is missing."""
    if not (REPO / "operators" / component / "handlers.py").exists():
        pytest.skip(f"operators/{component} has no handlers.py yet")
    if not (CHART / "templates" / component).is_dir():
        pytest.skip(f"operators/{component} has no chart RBAC yet (charts/trellis/templates/{component}/)")
    rbac = component_rbac(render_chart(namespace, release), component, namespace)
    if rbac is None:
        pytest.skip(f"charts/trellis/templates/{component}/ renders no ServiceAccount yet")
    return rbac
