"""The REST subset: CRUD with basic auth, and the rest-api policy error."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.rossim import RosSim, start_rossim


@pytest.fixture(scope="module")
def rest_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    sim = start_rossim(Path(tmp_path_factory.mktemp("rest")) / "rds", tls=False, rest=True)
    try:
        yield sim
    finally:
        sim.stop()


def call(
    sim: RosSim,
    method: str,
    path: str,
    body: Any = None,
    user: str | None = None,
    password: str | None = None,
) -> tuple[int, Any]:
    token = base64.b64encode(f"{user or sim.username}:{password or sim.password}".encode()).decode()
    req = urllib.request.Request(
        f"http://{sim.host}:{sim.rest_port}/rest/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def test_rest_crud_like_routeros_7(rest_sim: RosSim) -> None:
    status, created = call(
        rest_sim,
        "PUT",
        "disk",
        {
            "type": "file",
            "file-path": "storage-pool/r.img",
            "file-size": "1048576",
            "slot": "r",
            "mount-filesystem": "false",
        },
    )
    assert status == 201 and created["slot"] == "r" and created["mount-filesystem"] == "false"
    status, patched = call(rest_sim, "PATCH", f"disk/{created['.id']}", {"nvme-tcp-export": "true"})
    assert (status, patched["nvme-tcp-export"], patched["nvme-tcp-server-nqn"]) == (200, "true", "r")
    status, disks = call(rest_sim, "GET", "disk")
    pool = next(d for d in disks if d["slot"] == "storage-pool")
    assert (pool["mounted"], pool["state"], pool["fs"]) == ("true", "clean", "btrfs")
    assert int(pool["free"]) == int(pool["size"]) - 1048576
    assert call(rest_sim, "DELETE", f"disk/{created['.id']}")[0] == 204
    status, error = call(rest_sim, "DELETE", f"disk/{created['.id']}")
    assert (status, error["detail"]) == (404, "no such item")
    status, error = call(rest_sim, "PUT", "interface/bridge", {"name": "ether1"})
    assert (status, error["detail"]) == (400, "failure: item with such name already exists")


def test_user_without_rest_api_policy_is_not_allowed(rest_sim: RosSim) -> None:
    rest_sim.control.add_user("noapi", "pw", group="full", policies=["read", "write", "api", "ssh"])
    status, error = call(rest_sim, "GET", "disk", user="noapi", password="pw")
    assert (status, error) == (
        403,
        {"error": 403, "message": "Forbidden", "detail": "std failure: not allowed (9)"},
    )
    assert call(rest_sim, "GET", "disk", user="noapi", password="wrong")[0] == 401
