"""Access to the test control plane: kubectl, the Python client and object helpers."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin"
GROUP = "trellis.dev"
VERSION = "v1alpha1"


@dataclass
class ControlPlane:
    """A running trellis-testenv: its kubeconfig and server URL."""

    kubeconfig: Path
    server: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]], namespace: str | None = None) -> None:
        docs = obj if isinstance(obj, list) else [obj]
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=yaml.safe_dump_all(docs))

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        args = ["get", f"{plural}.{GROUP}" if "." not in plural else plural, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        return json.loads(self.kubectl(*args).stdout)

    def condition(
        self, plural: str, name: str, cond_type: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        obj = self.get(plural, name, namespace)
        for cond in obj.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == cond_type:
                return dict(cond)
        return None

    def wait_condition(
        self,
        plural: str,
        name: str,
        cond_type: str = "Ready",
        status: str = "True",
        namespace: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            cond = self.condition(plural, name, cond_type, namespace)
            return cond if cond and cond.get("status") == status else None

        return wait_for(probe, timeout=timeout, what=f"{plural}/{name} {cond_type}={status}")
