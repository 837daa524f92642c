"""deploy/'s many-accounts variants agree with the code: the Kubernetes overlay's patches apply to
the base manifests and leave a valid registry with every secret it names mounted; the Compose
override and the systemd environment file turn the single-account settings off and the registry
on; the example registry validates."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver.accounts import load_registry
from archiver.core.config import Settings
from tests.unit.test_deploy import DEPLOY, PREFIX, env_file, kube

SECRET_DIR = "/run/secrets/accounts"


def settings_with_registry(env: dict[str, str], registry: Path) -> Settings:
    """The settings of ``env`` as the process sees them: empty variables unset (``env_ignore_empty``),
    the registry at ``registry``, secrets left out (their files are not on this machine)."""
    values = {
        k[len(PREFIX) :].lower(): v
        for k, v in env.items()
        if k.startswith(PREFIX) and v != "" and not k.endswith(("_FILE", "PASSWORD", "_URL"))
    }
    values.pop("media_spool_dir", None)  # a directory of the container's, not of this machine
    values["accounts_file"] = str(registry)
    return Settings(_env_file=None, **values)


def materialise(toml: str, secrets: dict[str, str], tmp_path: Path) -> Path:
    """The registry with its secret files in ``tmp_path`` (placeholders replaced, as an operator will)."""
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    for name, value in secrets.items():
        (folder / name).write_text(value.replace("CHANGE-ME", "a-real-secret-4f9c"))
    path = tmp_path / "accounts.toml"
    path.write_text(toml.replace(SECRET_DIR, str(folder)))
    return path


def secret_names(toml: str) -> set[str]:
    """The secret files a registry names, which must all be under :data:`SECRET_DIR`."""
    paths = re.findall(r'file = "([^"]+)"', toml)
    assert paths and all(p.startswith(SECRET_DIR + "/") for p in paths)
    return {p.rsplit("/", 1)[1] for p in paths}


def pointer(doc: Any, path: str) -> tuple[Any, str | int]:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc, (last if isinstance(doc, dict) or last == "-" else int(last))


def apply(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902, the operations kustomize's patches use here (test, add, remove, replace)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parent, key = pointer(doc, op["path"])
        if op["op"] == "test":
            assert parent[key] == op["value"], op
        elif op["op"] == "remove":
            del parent[key]
        elif op["op"] == "replace":
            assert key in parent if isinstance(parent, dict) else 0 <= key < len(parent)  # type: ignore[operator]
            parent[key] = op["value"]
        elif isinstance(parent, list):
            parent.append(op["value"]) if key == "-" else parent.insert(int(key), op["value"])
        else:
            parent[key] = op["value"]
    return doc


def overlay() -> dict[tuple[str, str], dict[str, Any]]:
    folder = DEPLOY / "kubernetes" / "accounts"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = kube()
    for resource in kustomization["resources"]:
        assert (folder / resource).exists(), resource
    for doc in yaml.safe_load_all((folder / "registry.yaml").read_text()):
        docs[(doc["kind"], doc["metadata"]["name"])] = doc
    for patch in kustomization["patches"]:
        key = (patch["target"]["kind"], patch["target"]["name"])
        docs[key] = apply(docs[key], yaml.safe_load(patch["patch"]))
    return docs


def test_the_kubernetes_overlay_mounts_a_valid_registry_and_its_secrets_where_they_are_named(tmp_path):
    docs = overlay()
    config = docs[("ConfigMap", "archiver-config")]["data"]
    toml = docs[("ConfigMap", "archiver-accounts")]["data"]["accounts.toml"]
    secrets = docs[("Secret", "archiver-account-secrets")]["stringData"]
    assert not any(k in config for k in ("ARCHIVER_BANDWIDTH_ACCOUNT_ID", "ARCHIVER_BANDWIDTH_CLIENT_ID"))
    for name in ("archiver-worker", "archiver-intake"):
        spec = docs[("Deployment", name)]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        registry_dir = str(Path(config["ARCHIVER_ACCOUNTS_FILE"]).parent)
        assert mounts[registry_dir]["configMap"]["name"] == "archiver-accounts"
        assert mounts[SECRET_DIR]["secret"]["secretName"] == "archiver-account-secrets"
        refs = {e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e}
        assert "archiver-webhooks" not in refs  # the registry holds the webhook credentials now
        env = {**config, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}
        assert "ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE" not in env
        registry = load_registry(settings_with_registry(env, materialise(toml, secrets, tmp_path)))
        assert registry.named("bandwidth") == ["9900001", "9900002"] and len(registry.twilio) == 1
    named = secret_names(toml)
    assert named == set(secrets)  # every secret it names is in the Secret, and nothing else


@pytest.mark.parametrize("variant", ["compose", "systemd"])
def test_compose_and_systemd_turn_the_single_account_off_and_the_registry_on(variant, tmp_path):
    env = env_file(DEPLOY / "archiver.env.example")
    if variant == "compose":
        base = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        override = yaml.safe_load((DEPLOY / "docker-compose.accounts.yml").read_text())
        env |= base["x-archiver"]["environment"]
        for service in ("intake", "worker"):
            assert "./accounts-secrets:/run/secrets/accounts:ro" in override["services"][service]["volumes"]
        env |= override["services"]["worker"]["environment"]  # environment wins over env_file
    else:
        env |= env_file(DEPLOY / "accounts.env.example")  # read after archiver.env: it wins
        drop_in = (DEPLOY / "systemd" / "accounts.conf").read_text()
        assert "EnvironmentFile=/etc/archiver/accounts.env" in drop_in
        assert f"BindReadOnlyPaths=/etc/archiver/accounts-secrets:{SECRET_DIR}" in drop_in
    toml = (DEPLOY / "accounts.example.toml").read_text()
    names = secret_names(toml)
    registry = load_registry(
        settings_with_registry(env, materialise(toml, dict.fromkeys(names, "s"), tmp_path))
    )
    assert registry.from_file and registry.named("bandwidth") == ["9900001", "9900002"]
