"""A small OCI distribution API client (push/pull blobs and manifests) for tests, plus a launcher
for the real registry binary (Debian ``docker-registry``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.wait import wait_for

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class OCIClient:
    base: str  # https://host:port
    verify: str | bool = True
    auth: tuple[str, str] | None = None

    def _req(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        url = path_or_url if path_or_url.startswith("http") else self.base + path_or_url
        return requests.request(method, url, verify=self.verify, auth=self.auth, timeout=30, **kwargs)

    def ping(self) -> requests.Response:
        return self._req("GET", "/v2/")

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        start = self._req("POST", f"/v2/{repo}/blobs/uploads/")
        assert start.status_code == 202, f"upload start: {start.status_code} {start.text}"
        location = start.headers["Location"]
        if not location.startswith("http"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        done = self._req(
            "PUT",
            f"{location}{sep}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, f"upload finish: {done.status_code} {done.text}"
        assert done.headers.get("Docker-Content-Digest") == digest
        return digest

    def push_image(self, repo: str, tag: str, layer: bytes, config: dict[str, Any] | None = None) -> str:
        """Push a one-layer OCI image; returns the manifest digest."""
        config_bytes = json.dumps(
            config or {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        config_digest = self.push_blob(repo, config_bytes)
        layer_digest = self.push_blob(repo, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
        body = json.dumps(manifest).encode()
        resp = self._req(
            "PUT", f"/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert resp.status_code == 201, f"manifest put: {resp.status_code} {resp.text}"
        return resp.headers["Docker-Content-Digest"]

    def get_manifest(self, repo: str, ref: str) -> requests.Response:
        return self._req("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})

    def get_blob(self, repo: str, digest: str) -> requests.Response:
        return self._req("GET", f"/v2/{repo}/blobs/{digest}")

    def delete_manifest(self, repo: str, digest: str) -> requests.Response:
        return self._req("DELETE", f"/v2/{repo}/manifests/{digest}")


@dataclass
class RegistryProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def registry_binary(
    config: Path, url: str, env: dict[str, str] | None = None, verify: str | bool = True
) -> Iterator[RegistryProcess]:
    """Run ``docker-registry serve config`` until the block ends; waits for ``url``/v2/ to answer."""
    log = config.with_suffix(".log")
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT, env=full_env
        )
    running = RegistryProcess(proc, log)

    def answering() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"registry exited ({proc.returncode}):\n{running.logs()[-3000:]}")
        try:
            requests.get(url + "/v2/", verify=verify, timeout=2)
        except requests.ConnectionError:
            return False
        return True

    try:
        wait_for(answering, timeout=30, interval=0.1, what=f"registry at {url}")
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def garbage_collect(config: Path, delete_untagged: bool = True) -> subprocess.CompletedProcess[str]:
    args = [
        REGISTRY_BINARY,
        "garbage-collect",
        *(["--delete-untagged"] if delete_untagged else []),
        str(config),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
