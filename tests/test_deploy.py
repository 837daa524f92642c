"""deploy/ parses and agrees with the code: every ARCHIVER_* variable it sets is one the code reads
(and valid), none the code needs is missing, the commands are the CLI's, the shutdown grace covers
the soft shutdown, beat is single, and the IAM policy grants no more than the archiver uses."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from archiver.cli import build_parser
from archiver.config import FILE_SECRETS, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PREFIX = "ARCHIVER_"
KNOWN = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
#: What a production deployment must set (the code has no usable default for them).
REQUIRED = {
    "ARCHIVER_DATABASE_URL",
    "ARCHIVER_BROKER_URL",
    "ARCHIVER_S3_BUCKET",
    "ARCHIVER_BANDWIDTH_CLIENT_ID",
    "ARCHIVER_BANDWIDTH_CLIENT_SECRET",  # or its _FILE
    "ARCHIVER_INTAKE_USERNAME",
    "ARCHIVER_INTAKE_PASSWORD",
}
#: Bandwidth decommissioned API users on 2026-12-02: no deployment file may still name them.
DECOMMISSIONED = {"ARCHIVER_BANDWIDTH_USERNAME", "ARCHIVER_BANDWIDTH_PASSWORD"}
SOFT_SHUTDOWN = Settings.model_fields["worker_soft_shutdown_seconds"].default


def env_file(path: Path) -> dict[str, str]:
    pairs = [
        line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^[A-Z][A-Z0-9_]*=", line)
    ]
    return {k: v.split("#")[0].strip() for k, v in pairs}


def kube() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def settings_from(env: dict[str, str]) -> Settings:
    """The settings ``env`` makes, a secret file (a path of the deployment's) read as a placeholder."""
    values = {k[len(PREFIX) :].lower(): v for k, v in env.items() if k.startswith(PREFIX)}
    for name in [n for n in values if n.endswith("_file") and n.removesuffix("_file") in FILE_SECRETS]:
        values[name.removesuffix("_file")] = f"from {values.pop(name)}"
    return Settings(_env_file=None, **values)


def assert_known_and_complete(env: dict[str, str], where: str) -> None:
    unknown = {k for k in env if k.startswith(PREFIX)} - KNOWN
    assert not unknown, f"{where} sets variables the code never reads: {sorted(unknown)}"
    assert not DECOMMISSIONED & set(env), f"{where} still sets Bandwidth's decommissioned API user"
    given = set(env) | {k.removesuffix("_FILE") for k in env if k.endswith("_FILE")}
    missing = REQUIRED - given
    assert not missing, f"{where} lacks variables the code needs: {sorted(missing)}"
    settings_from(env)  # every value is valid


def assert_cli(argv: list[str], where: str) -> None:
    """An ``archiver …`` command parses with the CLI; a ``celery`` one names our app and a role."""
    if argv[0].endswith("archiver"):
        build_parser().parse_args(argv[1:])
    else:
        assert argv[0].endswith("celery") and argv[1:3] == ["-A", "workers"], f"{where}: {argv}"
        assert argv[3] in ("worker", "beat", "flower"), f"{where}: {argv}"


def test_the_environment_example_is_known_complete_and_valid():
    assert_known_and_complete(env_file(DEPLOY / "archiver.env.example"), "archiver.env.example")


def test_kubernetes_manifests_agree_with_the_settings():
    docs = kube()
    config = docs[("ConfigMap", "archiver-config")]["data"]
    secret = docs[("Secret", "archiver-secrets")]["stringData"]
    assert not set(config) & set(secret), "a variable both in the ConfigMap and the Secret"
    worker = docs[("Deployment", "archiver-worker")]["spec"]["template"]["spec"]
    worker_env = {e["name"]: e["value"] for e in worker["containers"][0]["env"] if "value" in e}
    secret_files = {k: v for k, v in worker_env.items() if k.endswith("_FILE")}  # (the spool is the pod's)
    assert_known_and_complete({**config, **secret, **secret_files}, "kubernetes worker")
    assert config["REMAP_SIGTERM"] == "SIGQUIT"
    secrets = {"ARCHIVER_INTAKE_PASSWORD", "ARCHIVER_DATABASE_URL"}
    assert secrets <= set(secret) and not secrets & set(config), "secrets belong in the Secret"
    # The client secret is a file from its own Secret, mounted where the worker's _FILE says.
    mounts = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["volumes"]}
    path = worker_env["ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE"]
    [(volume, mount)] = [(n, p) for n, p in mounts.items() if path.startswith(p + "/")]
    name, key = volumes[volume]["secret"]["secretName"], path.removeprefix(mount + "/")
    assert key in docs[("Secret", name)]["stringData"]
    for (kind, name), doc in docs.items():
        if kind not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            assert_cli(container["command"], name)
            refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == {"archiver-config", "archiver-secrets"}, name


def test_kubernetes_worker_grace_covers_the_soft_shutdown_and_beat_is_single():
    docs = kube()
    worker = docs[("Deployment", "archiver-worker")]["spec"]["template"]["spec"]
    soft = float(docs[("ConfigMap", "archiver-config")]["data"]["ARCHIVER_WORKER_SOFT_SHUTDOWN_SECONDS"])
    assert worker["terminationGracePeriodSeconds"] >= soft + 2
    container = worker["containers"][0]
    spool_dir = next(e["value"] for e in container["env"] if e["name"] == "ARCHIVER_MEDIA_SPOOL_DIR")
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert "emptyDir" in volumes[mounted[spool_dir]], "media is spooled to a volume of the pod's own"
    probe = worker["containers"][0]["livenessProbe"]["exec"]["command"]
    assert_cli(shlex.split(probe[-1].replace("$POD_NAME", "x"))[:-2], "worker liveness")
    beat = docs[("Deployment", "archiver-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    intake = docs[("Deployment", "archiver-intake")]["spec"]["template"]["spec"]["containers"][0]
    assert (
        intake["readinessProbe"]["httpGet"]["path"]
        == intake["livenessProbe"]["httpGet"]["path"]
        == "/healthz"
    )


def test_compose_runs_every_part_with_known_settings():
    spec = compose()
    services = spec["services"]
    assert {"redis", "postgres", "s3", "migrate", "intake", "worker", "beat", "flower"} <= set(services)
    example = env_file(DEPLOY / "archiver.env.example")  # compose's env_file is made from it
    for name in ("migrate", "intake", "worker", "beat", "flower"):
        service = services[name]
        assert service["env_file"] == "archiver.env"
        assert_known_and_complete({**example, **service["environment"]}, f"compose {name}")
        assert_cli(service["command"], f"compose {name}")
        path = {**example, **service["environment"]}["ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE"]
        assert path == f"/run/secrets/{service['secrets'][0]}" and service["secrets"][0] in spec["secrets"]
    assert float(services["worker"]["stop_grace_period"].rstrip("s")) >= SOFT_SHUTDOWN + 2
    assert "beat" not in spec.get("x-scale", {})  # documented: never scale beat
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "REMAP_SIGTERM=SIGQUIT" in dockerfile


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_parse_and_run_our_commands(unit):
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    service = parser["Service"]
    assert service["EnvironmentFile"] == "/etc/archiver/archiver.env"
    argv = shlex.split(service["ExecStart"])
    assert_cli([Path(argv[0]).name, *argv[1:]], unit.name)
    if "worker" in unit.name:
        assert service["Environment"] == "REMAP_SIGTERM=SIGQUIT"
        assert float(service["TimeoutStopSec"]) >= SOFT_SHUTDOWN + 2


def test_the_iam_policy_grants_only_what_the_archiver_uses():
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    actions = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        actions |= set(listed)
        bucket = statement["Resource"].split(":::")[1].split("/")[0]
        assert "*" not in bucket  # one bucket, named
    used = {
        "s3:PutObject",  # PutObject, multipart create/upload/complete
        "s3:GetObject",  # GetObject and HeadObject (verification, reconcile)
        "s3:PutObjectTagging",  # a multipart object's SHA-256
        "s3:GetObjectTagging",
        "s3:AbortMultipartUpload",  # a failed media upload
        "s3:ListMultipartUploadParts",
        "s3:ListBucket",  # a missing object answers 404, not 403
    }
    assert actions <= used
    assert not any("Delete" in a or a.endswith("*") for a in actions)  # the archive is never deleted by us


def test_every_setting_is_documented_in_the_readme():
    readme = (DEPLOY.parent / "README.md").read_text()
    undocumented = sorted(name for name in KNOWN if f"`{name}`" not in readme)
    assert not undocumented, f"README's configuration table lacks {undocumented}"
