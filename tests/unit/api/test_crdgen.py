"""The committed CRDs are exactly what the models generate, and the schemas are structural."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from trellis import crdgen
from trellis.api import BY_KIND, KINDS

REPO = Path(__file__).resolve().parents[3]
GENERATED = crdgen.generate()


def test_committed_crds_match_models() -> None:
    stale = crdgen.differences(GENERATED, REPO / "crds")
    assert not stale, f"crds/ is out of date for {stale}: run `make crds`"


def test_chart_crds_match_models() -> None:
    stale = crdgen.differences(GENERATED, REPO / "charts" / "trellis" / "crds")
    assert not stale, f"charts/trellis/crds is out of date for {stale}: run `make crds`"


def test_generation_is_deterministic() -> None:
    assert crdgen.generate() == GENERATED


def test_check_mode_detects_drift(tmp_path: Path) -> None:
    crdgen.write(GENERATED, tmp_path)
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    first = sorted(tmp_path.iterdir())[0]
    first.write_text(first.read_text() + "# edited\n")
    (tmp_path / f"old.{crdgen.GROUP}.yaml").write_text("stale")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    crdgen.main(["--out", str(tmp_path)])
    assert not crdgen.differences(GENERATED, tmp_path)
    assert not (tmp_path / f"old.{crdgen.GROUP}.yaml").exists()


def _crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(text) for text in GENERATED.values()]


def _walk(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _walk(node["additionalProperties"], f"{path}[*]")


@pytest.mark.parametrize("doc", _crds(), ids=lambda d: d["metadata"]["name"])
def test_crd_conventions(doc: dict[str, Any]) -> None:
    spec = doc["spec"]
    assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "trellis"
    assert spec["group"] == "trellis.dev"
    assert spec["names"]["categories"] == ["trellis"]
    assert spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age" and len(columns) >= 3
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert "observedGeneration" in status


@pytest.mark.parametrize("doc", _crds(), ids=lambda d: d["metadata"]["name"])
def test_schema_is_structural_and_documented(doc: dict[str, Any]) -> None:
    root = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root["description"] and root["required"] == ["spec"]
    sections = [_walk(root["properties"][name], f".{name}") for name in ("spec", "status")]
    for path, node in (item for section in sections for item in section):
        assert "$ref" not in node and "allOf" not in node and "title" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf outside int-or-string"
        assert node.get("description") or path.endswith(("[]", "[*]")), f"{path}: no description"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert ".patches." in path or path.endswith(".value"), f"{path}: free-form outside Talos patches"
        if node.get("type") == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, f"{path}: string without maxLength (unbounded CEL cost)"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: array without maxItems (unbounded CEL cost)"


def test_every_kind_has_a_crd_file() -> None:
    names = {f"{k.resource.plural}.trellis.dev.yaml" for k in KINDS}
    assert names == set(GENERATED)
    assert {d["spec"]["names"]["kind"] for d in _crds()} == set(BY_KIND)


def test_scopes_and_short_names() -> None:
    expected = {
        "BareMetalHost": ("Namespaced", "bmh"),
        "Network": ("Cluster", "net"),
        "DHCPReservation": ("Namespaced", "dhcpr"),
        "Router": ("Cluster", "rtr"),
        "Registry": ("Cluster", "reg"),
        "ISOCDROM": ("Cluster", "icd"),
        "TalosCluster": ("Namespaced", "tc"),
        "TalosDevice": ("Namespaced", "td"),
    }
    got = {
        d["spec"]["names"]["kind"]: (d["spec"]["scope"], d["spec"]["names"]["shortNames"][0]) for d in _crds()
    }
    assert got == expected


def test_generator_refuses_unsupported_unions() -> None:
    from pydantic import Field

    from trellis.api.common import TrellisModel

    class Bad(TrellisModel):
        either: int | list[int] = Field(description="ambiguous")

    schema = Bad.model_json_schema(by_alias=True)
    with pytest.raises(crdgen.SchemaError, match="unions"):
        crdgen._Converter({}).convert(schema, "Bad")


def _rule_messages(node: Mapping[str, Any]) -> Iterator[str]:
    for _, sub in _walk(node):
        for rule in sub.get("x-kubernetes-validations", []):
            yield rule["message"]


def test_every_validation_rule_is_documented() -> None:
    text = (REPO / "docs" / "api.md").read_text().replace("\\|", "|")
    missing = {
        message
        for doc in _crds()
        for message in _rule_messages(doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        if message not in text
    }
    assert not missing, f"docs/api.md does not mention: {sorted(missing)}"
