"""deploy/ against the code: the Dockerfile, the compose file and the Kubernetes manifests use
the topic names, partition counts, ports, health paths and settings the code has, and the lock
files pin what pyproject.toml asks for; so none of them can drift unnoticed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

from connectors.graph.receiver import HEALTH_PATH, READY_PATH
from pipeline import manifests
from pipeline.settings import KafkaSettings, ReceiverSettings, Settings, WebSettings
from pipeline.stages.stream import changelog_topic
from pipeline.topics import ALL_TOPICS, CURSORS, GRAPH_NOTIFICATIONS, topic_name
from pipeline.web.metrics import WorkerMetrics
from pipeline.web.server import StatusWeb, create_web_app
from pipeline.web.status import WorkerView

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
# env vars the image reads that are not settings (the HEALTHCHECK's URL)
NOT_SETTINGS = {"HEALTHCHECK_URL"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _k8s() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return [doc for name in kustomization["resources"] for doc in _docs(K8S / name)]


def _kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _k8s() if d["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _kind(kind) if d["metadata"]["name"] == name]
    return doc


def _container(deployment: str) -> dict[str, Any]:
    (container,) = _named("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return cast(dict[str, Any], container)


def _compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load((COMPOSE / "compose.yaml").read_text()))


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _kafka_version() -> str:
    pom = (DEPLOY / "kafka" / "pom.xml").read_text(encoding="utf-8")
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert found is not None
    return found.group(1)


def _setting_exists(name: str) -> bool:
    """Whether ``DYNASYNC_A__B`` names a field of :class:`Settings` (pydantic-settings
    silently ignores one that does not, so a typo would just not configure anything)."""
    if not name.startswith("DYNASYNC_"):
        return False
    model: type[BaseModel] = Settings
    parts = name.removeprefix("DYNASYNC_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        last = i == len(parts) - 1
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            if last:
                return False  # a whole group is not one variable
            model = nested
        elif not last:
            return False
    return True


def _k8s_env(deployment: str) -> dict[str, str]:
    """A container's environment: its ConfigMaps, then its env (a secret as a placeholder)."""
    container = _container(deployment)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_named("ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "x" * 40)
    return env


def _compose_env(service: str) -> dict[str, str]:
    spec = _compose()["services"][service]
    env = _env_file(COMPOSE / "emulators.env") if "env_file" in spec else {}
    env.update({k: str(v) for k, v in spec.get("environment", {}).items()})
    return env


def _settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("DYNASYNC_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("DYNASYNC_"):
            monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


# --- generated manifests ---------------------------------------------------------------------


def test_generated_manifests_are_current() -> None:
    for path, text in manifests.rendered().items():
        assert (ROOT / path).read_text(encoding="utf-8") == text, f"{path}: run make manifests"


def test_manifests_check_reports_a_stale_file(tmp_path: Path) -> None:
    assert manifests.main(["--root", str(tmp_path)]) == 0
    assert manifests.main(["--root", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "deploy/k8s/kafka-topics.yaml"
    stale.write_text(stale.read_text().replace("partitions: 6", "partitions: 5", 1))
    assert manifests.main(["--root", str(tmp_path), "--check"]) == 1


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


# --- Kafka: topics, users, cluster -----------------------------------------------------------


def test_kafka_topics_are_the_catalogue() -> None:
    config = _named("ConfigMap", "dynasync")["data"]
    kafka = KafkaSettings(replication_factor=int(config["DYNASYNC_KAFKA__REPLICATION_FACTOR"]))
    topics = {d["spec"]["topicName"]: d["spec"] for d in _kind("KafkaTopic")}
    assert set(topics) == {topic_name(spec, kafka) for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        topic = topics[topic_name(spec, kafka)]
        assert topic["partitions"] == kafka.partitions == int(config["DYNASYNC_KAFKA__PARTITIONS"])
        assert topic["replicas"] == kafka.replication_factor
        assert spec.config().items() <= topic["config"].items()
    for topic in _kind("KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == manifests.CLUSTER


def _acls(user: str) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], _named("KafkaUser", user)["spec"]["authorization"]["acls"])


def _allowed(acls: list[dict[str, Any]], kind: str, name: str, operation: str) -> bool:
    for acl in acls:
        res = acl["resource"]
        match = (
            name == res["name"] if res["patternType"] == "literal" else name.startswith(res["name"])
        )
        if res["type"] == kind and match and operation in acl["operations"]:
            return True
    return False


def test_worker_user_reaches_its_topics_groups_and_changelogs_only() -> None:
    settings, kafka = Settings(_env_file=None), KafkaSettings()
    acls = _acls(manifests.WORKER_USER)
    for spec in ALL_TOPICS:
        for op in ("Read", "Write", "Describe"):
            assert _allowed(acls, "topic", topic_name(spec, kafka), op)
    for table in ("links", "link-index", "guard", "fanout-members"):
        for op in ("Create", "Read", "Write"):
            assert _allowed(acls, "topic", changelog_topic(settings, table), op)
    for group in ("engine", "fanout", "writers-crm", "writers-outlook", "dlq-replay"):
        assert _allowed(acls, "group", f"{settings.app_id}-{group}", "Read")
    assert not _allowed(acls, "topic", "someone-elses-topic", "Read")
    assert not any(a["resource"]["type"] == "cluster" for a in acls)
    assert all(a["resource"]["name"] not in ("*", "") for a in acls)


def test_receiver_user_writes_notifications_and_reads_cursors_only() -> None:
    kafka, acls = KafkaSettings(), _acls(manifests.RECEIVER_USER)
    for spec in ALL_TOPICS:
        name = topic_name(spec, kafka)
        assert _allowed(acls, "topic", name, "Describe")
        assert _allowed(acls, "topic", name, "Write") == (spec is GRAPH_NOTIFICATIONS)
        assert _allowed(acls, "topic", name, "Read") == (spec is CURSORS)
    assert not any(a["resource"]["type"] == "group" for a in acls)


def test_kafka_cluster_matches_the_users_and_the_clients() -> None:
    (kafka,) = _kind("Kafka")
    assert str(kafka["spec"]["kafka"]["version"]) == _kafka_version()
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    config = _named("ConfigMap", "dynasync")["data"]
    name = kafka["metadata"]["name"]
    assert name == manifests.CLUSTER
    assert config["DYNASYNC_KAFKA__BOOTSTRAP"] == f"{name}-kafka-bootstrap:{listener['port']}"
    assert config["DYNASYNC_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    (pool,) = _kind("KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name
    assert pool["spec"]["replicas"] >= int(config["DYNASYNC_KAFKA__REPLICATION_FACTOR"])
    for deployment, user in (
        ("dynasync-worker", manifests.WORKER_USER),
        ("dynasync-receiver", manifests.RECEIVER_USER),
    ):
        container = _container(deployment)
        env = {v["name"]: v for v in container["env"]}
        assert env["DYNASYNC_KAFKA__SASL_USERNAME"]["value"] == user
        ref = env["DYNASYNC_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == user  # Strimzi's Secret of the KafkaUser
        volumes = _named("Deployment", deployment)["spec"]["template"]["spec"]["volumes"]
        ca = next(v for v in volumes if v["name"] == "kafka-ca")
        assert ca["secret"]["secretName"] == f"{name}-cluster-ca-cert"
        mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-ca")
        assert config["DYNASYNC_KAFKA__SSL_CA_FILE"] == f"{mount['mountPath']}/ca.crt"


# --- workloads -------------------------------------------------------------------------------


def test_every_dynasync_variable_is_a_setting() -> None:
    names: set[str] = set()
    for deployment in ("dynasync-worker", "dynasync-receiver"):
        names |= set(_k8s_env(deployment))
    for service in ("worker-1", "worker-2", "receiver"):
        names |= set(_compose_env(service))
    names |= set(_env_file(COMPOSE / "tenant.env.example"))
    names |= set(re.findall(r"\b(DYNASYNC_[A-Z_]+)=", DOCKERFILE.read_text()))
    assert "DYNASYNC_KAFKA__SASL_PASSWORD" in names
    unknown = sorted(n for n in names if n not in NOT_SETTINGS and not _setting_exists(n))
    assert unknown == []


def test_the_variable_check_catches_a_typo() -> None:
    assert _setting_exists("DYNASYNC_KAFKA__BOOTSTRAP")
    assert _setting_exists("DYNASYNC_APP_ID")
    assert not _setting_exists("DYNASYNC_KAFKA__BOOTSTRAPS")
    assert not _setting_exists("DYNASYNC_KAFKA")
    assert not _setting_exists("DYNASYNC_APP_ID__X")


@pytest.mark.parametrize(
    ("where", "name"),
    [
        ("k8s", "dynasync-worker"),
        ("k8s", "dynasync-receiver"),
        ("compose", "worker-1"),
        ("compose", "worker-2"),
        ("compose", "receiver"),
    ],
)
def test_each_environment_makes_valid_settings(
    where: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _k8s_env(name) if where == "k8s" else _compose_env(name)
    settings = _settings_of(env, monkeypatch)
    assert settings.kafka.partitions == KafkaSettings().partitions
    if "receiver" in name:
        assert settings.receiver.host == "0.0.0.0"
    else:
        assert settings.web.host == "0.0.0.0"
        assert settings.receiver.enabled is False  # the receiver runs apart
        assert settings.graph.notification_url is not None


def test_worker_probes_and_port_match_its_web_server() -> None:
    container = _container("dynasync-worker")
    (port,) = container["ports"]
    assert port["containerPort"] == WebSettings().port
    assert _k8s_env("dynasync-worker")["DYNASYNC_WEB__PORT"] == str(port["containerPort"])
    app = create_web_app(StatusWeb(cast(WorkerView, None), WorkerMetrics(), lambda: None, "x"))
    paths = {route.resource.canonical for route in app.router.routes() if route.resource}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in paths
        assert get["port"] == port["name"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]


def test_receiver_probes_service_and_ingress_meet() -> None:
    container = _container("dynasync-receiver")
    (port,) = container["ports"]
    assert port["containerPort"] == ReceiverSettings().port
    assert _k8s_env("dynasync-receiver")["DYNASYNC_RECEIVER__PORT"] == str(port["containerPort"])
    assert container["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": port["name"]}
    assert container["resources"]["requests"]["cpu"]
    service = _named("Service", "dynasync-receiver")
    labels = _named("Deployment", "dynasync-receiver")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    (ingress,) = _kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend == {"name": "dynasync-receiver", "port": {"name": service_port["name"]}}
    url = _named("ConfigMap", "dynasync")["data"]["DYNASYNC_GRAPH__NOTIFICATION_URL"]
    assert url == f"https://{rule['host']}"
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]


def test_pod_disruption_budgets_cover_both_deployments() -> None:
    covered = set()
    for pdb in _kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        for deployment in _kind("Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if selector.items() <= labels.items():
                covered.add(deployment["metadata"]["name"])
                assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert covered == {"dynasync-worker", "dynasync-receiver"}


def test_secrets_are_referenced_never_included() -> None:
    assert _kind("Secret") == []
    for deployment in ("dynasync-worker", "dynasync-receiver"):
        for var in _container(deployment)["env"]:
            if any(word in var["name"] for word in ("SECRET", "PASSWORD", "KEY")):
                assert "secretKeyRef" in var["valueFrom"], var["name"]


# --- image and compose -----------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_non_root_with_a_health_check() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert "--require-hashes" in text and "requirements-runtime.lock" in text
    user = re.findall(r"^USER (\d+)", text, re.M)
    assert user and user[-1] != "0"
    for deployment in _kind("Deployment"):
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True
        assert str(security["runAsUser"]) == user[-1]
    assert "HEALTHCHECK" in text and "/healthz" in text
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == {WebSettings().port, ReceiverSettings().port}


def test_compose_services_agree_with_the_code() -> None:
    compose = _compose()
    services = compose["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{_kafka_version()}"
    workers = [name for name, spec in services.items() if spec.get("command") == ["run"]]
    assert len(workers) == 2
    internal = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")[0]
    for name in [*workers, "receiver"]:
        env = _compose_env(name)
        assert f"INTERNAL://{env['DYNASYNC_KAFKA__BOOTSTRAP']}" == internal
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in workers:
        assert any(p.endswith(f":{WebSettings().port}") for p in services[name]["ports"])
    receiver_port = ReceiverSettings().port
    assert services["receiver"]["ports"] == [f"127.0.0.1:{receiver_port}:{receiver_port}"]
    assert services["receiver"]["environment"]["HEALTHCHECK_URL"].endswith(
        f":{receiver_port}{HEALTH_PATH}"
    )
    # the emulators' URLs the workers are given are the emulator services'
    emulators = _env_file(COMPOSE / "emulators.env")
    graph_port = services["graph"]["command"][services["graph"]["command"].index("--port") + 1]
    assert emulators["DYNASYNC_GRAPH__BASE_URL"] == f"http://graph:{graph_port}/v1.0"
    assert emulators["DYNASYNC_GRAPH__NOTIFICATION_URL"] == f"http://receiver:{receiver_port}"
    dotenv = _env_file(COMPOSE / ".env")
    assert dotenv["DYNASYNC_ENV_FILE"] == "emulators.env"
    assert set(dotenv["COMPOSE_PROFILES"].split(",")) == {"emulators"}


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def test_compose_file_is_valid_for_docker_compose() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither docker compose nor docker-compose is installed")
    done = subprocess.run(
        [*cli, "-f", str(COMPOSE / "compose.yaml"), "config", "-q"],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# --- lock files ------------------------------------------------------------------------------


def _pins(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", path.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_lock_files_pin_what_pyproject_asks_for() -> None:
    project = _pyproject()["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    lock, runtime_lock = (
        _pins(ROOT / "requirements.lock"),
        _pins(ROOT / "requirements-runtime.lock"),
    )
    for req in [*runtime, *dev]:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is not in requirements.lock: run make lock"
        assert req.specifier.contains(lock[name], prereleases=True), (req, lock[name])
    for req in runtime:
        assert canonicalize_name(req.name) in runtime_lock, f"{req.name}: run make lock"
    assert runtime_lock.items() <= lock.items()  # the image runs the versions the tests ran
    assert "--hash=sha256:" in (ROOT / "requirements-runtime.lock").read_text()
