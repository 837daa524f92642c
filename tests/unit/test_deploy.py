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

from archiver.cli.main import build_parser
from archiver.core.config import Settings
from archiver.core.exposure import is_placeholder
from archiver.core.secrets import FILE_SECRETS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
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


def settings_from(env: dict[str, str], *, fill_placeholders: bool = True) -> Settings:
    """The settings ``env`` makes, a secret file (a path of the deployment's) read as a stand-in;
    with ``fill_placeholders``, each ``CHANGE-ME`` replaced as the operator will (the values' other
    parts are checked; :func:`test_a_placeholder_left_anywhere_stops_the_start` checks the refusal)."""
    values = {k[len(PREFIX) :].lower(): v for k, v in env.items() if k.startswith(PREFIX)}
    for name in [n for n in values if n.endswith("_file") and n.removesuffix("_file") in FILE_SECRETS]:
        values[name.removesuffix("_file")] = f"from {values.pop(name)}"
    values.pop("media_spool_dir", None)  # a directory of the container's, not of this machine
    if fill_placeholders:
        values = {k: v.replace("CHANGE-ME", "a-real-secret-4f9c") for k, v in values.items()}
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


def pod_specs() -> dict[str, dict]:
    """Every pod template of the manifests (Deployments and Jobs), by workload name."""
    return {
        name: doc["spec"]["template"] for (kind, name), doc in kube().items() if kind in ("Deployment", "Job")
    }


def container_env(docs: dict, container: dict) -> dict[str, str]:
    """What a container's environment holds: its ConfigMap, its Secrets and its own values."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env |= docs[("ConfigMap", ref["configMapRef"]["name"])]["data"]
        else:
            env |= docs[("Secret", ref["secretRef"]["name"])]["stringData"]
    return env | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_kubernetes_manifests_agree_with_the_settings_and_give_each_part_only_its_secrets():
    docs = kube()
    config = docs[("ConfigMap", "archiver-config")]["data"]
    secrets = {name: doc["stringData"] for (kind, name), doc in docs.items() if kind == "Secret"}
    for values in secrets.values():
        assert not set(config) & set(values), "a variable both in the ConfigMap and a Secret"
    assert not {k for k in config if re.search("PASSWORD|SECRET|TOKEN|DATABASE_URL|BASIC_AUTH", k)}
    pods = pod_specs()
    env = {name: container_env(docs, pod["spec"]["containers"][0]) for name, pod in pods.items()}

    worker = pods["archiver-worker"]["spec"]
    assert_known_and_complete(env["archiver-worker"], "kubernetes worker")
    assert config["REMAP_SIGTERM"] == "SIGQUIT"
    # The client secret is a file from its own Secret, mounted where the worker's _FILE says.
    mounts = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["volumes"]}
    path = env["archiver-worker"]["ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE"]
    [(volume, mount)] = [(n, p) for n, p in mounts.items() if path.startswith(p + "/")]
    name, key = volumes[volume]["secret"]["secretName"], path.removeprefix(mount + "/")
    assert key in secrets[name]
    mounted_secrets = {
        name: {v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if "secret" in v}
        for name, pod in pods.items()
    }
    assert {n for n, s in mounted_secrets.items() if s} == {
        "archiver-worker"
    }  # the client secret: workers only

    settings_from(env["archiver-intake"]).require("database_url", "intake_username", "intake_password")
    assert "ARCHIVER_MIGRATIONS_DATABASE_URL" in env["archiver-migrate"]
    assert [n for n, e in env.items() if "ARCHIVER_MIGRATIONS_DATABASE_URL" in e] == ["archiver-migrate"]
    assert "ARCHIVER_DATABASE_URL" not in env["archiver-migrate"]
    flower_env = env["archiver-flower"]
    assert "FLOWER_BASIC_AUTH" in flower_env
    assert [n for n, e in env.items() if "FLOWER_BASIC_AUTH" in e] == ["archiver-flower"]
    for part in ("archiver-flower", "archiver-beat"):  # a broker, no provider or database secret
        assert not {k for k in env[part] if re.search("PASSWORD|SECRET|TOKEN|DATABASE_URL", k)}, part
    for name, pod in pods.items():
        for container in pod["spec"]["containers"]:
            assert_cli(container["command"], name)


def test_every_kubernetes_pod_is_locked_down():
    for name, pod in pod_specs().items():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            hardened = container["securityContext"]
            assert hardened["allowPrivilegeEscalation"] is False, name
            assert hardened["readOnlyRootFilesystem"] is True, name
            assert hardened["capabilities"]["drop"] == ["ALL"], name
            image = container["image"]
            assert not image.endswith(":latest") and (":" in image or "@sha256:" in image), (name, image)
            writable = {m["mountPath"] for m in container["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
            assert "/tmp" in writable, f"{name}: a read-only root needs a writable /tmp"


def test_network_policies_cover_every_pod_and_open_only_the_intake_to_the_outside():
    docs = kube()
    policies = [doc for (kind, _name), doc in docs.items() if kind == "NetworkPolicy"]

    def selects(policy: dict, labels: dict[str, str]) -> bool:
        wanted = policy["spec"]["podSelector"].get("matchLabels", {})
        return all(labels.get(k) == v for k, v in wanted.items())

    for name, pod in pod_specs().items():
        labels = pod["metadata"]["labels"]
        applying = [p for p in policies if selects(p, labels)]
        assert any(p["metadata"]["name"] == "archiver-default-deny" for p in applying), name
        assert any(p["metadata"]["name"] == name for p in applying), f"{name} has no policy of its own"
        assert all({"Ingress", "Egress"} <= set(p["spec"]["policyTypes"]) for p in applying), name
        from_anywhere = [r for p in applying for r in p["spec"].get("ingress", []) if "from" not in r]
        if name == "archiver-intake":
            assert [r["ports"] for r in from_anywhere] == [[{"port": 8080, "protocol": "TCP"}]]
        else:
            assert from_anywhere == [], f"{name} is reachable from anywhere"
    deny = next(p for p in policies if p["metadata"]["name"] == "archiver-default-deny")
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for backend in ("redis", "postgres"):
        policy = next(p for p in policies if p["metadata"]["name"] == f"archiver-{backend}")
        sources = {
            f["podSelector"]["matchLabels"]["app"] for r in policy["spec"]["ingress"] for f in r["from"]
        }
        assert "archiver-flower" not in sources or backend == "redis"
        assert ("archiver-migrate" in sources) == (backend == "postgres")
    intake = docs[("Deployment", "archiver-intake")]["spec"]["template"]
    assert intake["metadata"]["annotations"]["prometheus.io/port"] == "9108"
    service_ports = {p["targetPort"] for p in docs[("Service", "archiver-intake")]["spec"]["ports"]}
    assert service_ports == {"http"}  # the metrics port is not on the Service


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
    for name in ("migrate", "intake", "worker", "beat"):
        service = services[name]
        files = service["env_file"] if isinstance(service["env_file"], list) else [service["env_file"]]
        assert files[0] == "archiver.env"
        given = {**example, **service["environment"]}
        if name == "migrate":
            given |= env_file(DEPLOY / "migrate.env.example")
        assert_known_and_complete(given, f"compose {name}")
        assert_cli(service["command"], f"compose {name}")
        path = given["ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE"]
        assert path == f"/run/secrets/{service['secrets'][0]}" and service["secrets"][0] in spec["secrets"]
    assert services["migrate"]["env_file"] == ["archiver.env", "migrate.env"]
    assert all("migrate.env" not in str(s.get("env_file")) for n, s in services.items() if n != "migrate")
    flower = services["flower"]
    assert flower["env_file"] == "flower.env" and "secrets" not in flower
    assert_cli(flower["command"], "compose flower")
    flower_env = {**env_file(DEPLOY / "flower.env.example"), **flower["environment"]}
    assert not {k for k in flower_env if re.search("PASSWORD|SECRET|TOKEN|DATABASE_URL", k)}
    assert float(services["worker"]["stop_grace_period"].rstrip("s")) >= SOFT_SHUTDOWN + 2
    assert "beat" not in spec.get("x-scale", {})  # documented: never scale beat
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "REMAP_SIGTERM=SIGQUIT" in dockerfile


def test_compose_keeps_secrets_out_of_the_file_and_flower_and_metrics_on_localhost():
    services = compose()["services"]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            secret_like = re.search("PASSWORD|SECRET_ACCESS_KEY|TOKEN|BASIC_AUTH|ROOT_USER", key)
            assert not secret_like or key.endswith("_FILE"), f"{name} sets the secret {key} inline"
            assert not is_placeholder(str(value)), f"{name}: {key}"
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, f"{name}: unpinned image {image!r}"
        for port in service.get("ports", []):
            published = str(port)
            if name == "intake" and published == "8080:8080":
                continue  # the webhooks: the one port meant for the outside
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published} beyond localhost"
    assert "127.0.0.1:5555:5555" in services["flower"]["ports"]
    assert "127.0.0.1:9108:9108" in services["intake"]["ports"]
    for name in ("intake", "worker", "beat", "flower", "migrate"):
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    # MinIO's root user stays with MinIO and its set-up job; the archiver has a user of its own.
    assert "minio.env" in services["s3"]["env_file"]
    assert not any(
        "minio.env" in str(services[n].get("env_file")) for n in ("intake", "worker", "beat", "flower")
    )
    assert re.match(r"^python:3\.11\.\d+-slim", re.search(r"^FROM (\S+)", (DEPLOY / "Dockerfile").read_text(),
                                                          re.M).group(1))  # fmt: skip


def test_a_placeholder_left_anywhere_stops_the_start():
    """Every example ships CHANGE-ME where a secret goes; a process given one refuses to start."""
    from pydantic import ValidationError

    from archiver.cli.flower import FlowerRefused, basic_auth

    examples = [env_file(DEPLOY / "archiver.env.example"), env_file(DEPLOY / "migrate.env.example")]
    docs = kube()
    examples += [doc["stringData"] for (kind, _n), doc in docs.items() if kind == "Secret"]
    refused = 0
    for example in examples:
        if not any("CHANGE-ME" in v for k, v in example.items() if k.startswith(PREFIX)):
            continue
        with pytest.raises(ValidationError, match="a placeholder, not a secret"):
            settings_from(example, fill_placeholders=False)
        refused += 1
    assert refused >= 4
    for flower_env in (
        env_file(DEPLOY / "flower.env.example"),
        docs[("Secret", "archiver-flower")]["stringData"],
    ):
        with pytest.raises(FlowerRefused, match="placeholder"):
            basic_auth(flower_env)
    for name in ("postgres.env.example", "minio.env.example"):
        assert "CHANGE-ME" in (DEPLOY / name).read_text()  # and postgres-passwords.sh refuses it
    assert "change*me" in (DEPLOY / "postgres-passwords.sh").read_text()


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_parse_and_run_our_commands(unit):
    parser = configparser.ConfigParser(interpolation=None, strict=False)  # EnvironmentFile= repeats
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    service = parser["Service"]
    files = [line for line in unit.read_text().splitlines() if line.startswith("EnvironmentFile=")]
    if "flower" in unit.name:  # Flower's credentials and the broker, nothing else
        assert files == ["EnvironmentFile=/etc/archiver/flower.env"]
    elif "migrate" in unit.name:
        assert files == [
            "EnvironmentFile=/etc/archiver/archiver.env",
            "EnvironmentFile=/etc/archiver/migrate.env",
        ]
    else:
        assert files == ["EnvironmentFile=/etc/archiver/archiver.env"]
    argv = shlex.split(service["ExecStart"])
    assert_cli([Path(argv[0]).name, *argv[1:]], unit.name)
    if "worker" in unit.name:
        assert "REMAP_SIGTERM=SIGQUIT" in service["Environment"].split()
        assert float(service["TimeoutStopSec"]) >= SOFT_SHUTDOWN + 2
    if "intake" in unit.name:
        assert parser["Unit"]["Requires"] == "archiver-migrate.service"


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_are_sandboxed(unit):
    import shutil
    import subprocess

    text = unit.read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=yes",
                 "CapabilityBoundingSet=\n", "RestrictSUIDSGID=yes"):  # fmt: skip
        assert line in text + "\n", f"{unit.name} lacks {line.strip()}"
    writable = re.findall(r"^ReadWritePaths=(.+)$", text, re.M)
    spool = re.search(r"ARCHIVER_MEDIA_SPOOL_DIR=(\S+)", text)
    if spool:  # the worker writes its spool, and nothing else
        assert writable == [spool.group(1)] and "StateDirectory=" in text
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian's systemd package) checks the units"
    out = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "is not executable" not in line]
    assert problems == [], problems


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


def test_every_setting_is_documented_in_the_generated_reference():
    """docs/configuration.md is generated from the declarations and is not stale; every setting has
    a description (python -m archiver.core.settings.reference > docs/configuration.md)."""
    from archiver.core.settings.reference import render

    reference = render()
    assert (DEPLOY.parent / "docs" / "configuration.md").read_text() == reference
    assert sorted(name for name, field in Settings.model_fields.items() if not field.description) == []
    assert [name for name in KNOWN if f"`{name}`" not in reference] == []


@pytest.mark.parametrize(
    ("lock", "extras"), [("runtime", ["flower"]), ("demo", ["demo"]), ("test", ["test", "demo"])]
)
def test_the_lock_files_pin_every_dependency_the_project_declares(lock, extras):
    """scripts/lock.sh made requirements/*.txt from pyproject.toml: each declared dependency is there,
    pinned to one version within the declared range (kombu above all: the project patches its Redis
    transport, so a release it was not tested with must not slip into an install)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in extras for r in project["optional-dependencies"][extra]]
    pins = {}
    for line in (DEPLOY.parent / "requirements" / f"{lock}.txt").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.split(";")[0].strip()
    for requirement in declared:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in requirements/{lock}.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    assert "kombu" in pins and "celery" in pins
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "requirements/runtime.txt" in dockerfile and "--no-deps ." in dockerfile
