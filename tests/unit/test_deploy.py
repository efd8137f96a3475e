"""The deployment artefacts: Dockerfile, Apptainer definition and Kubernetes manifests.

These are static checks: no docker, apptainer, kubectl or kustomize runs here. The manifests are
validated against the official Kubernetes OpenAPI schemas (shipped by ``kubernetes-validate``),
the kustomization is checked against the folder's files, and the manifests are checked against
each other, against the Dockerfile and against the routes of the real FastAPI application.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI

from clientswarm.service.app import create_app
from clientswarm.service.manager import ClusterManager
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Store

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
APPTAINER = ROOT / "deploy" / "apptainer" / "clientswarm.def"
NAMESPACE = "clientswarm"
OPTIONAL = {"servicemonitor.yaml"}
"""Manifests left out of the kustomization (their CRD may be absent)."""
KUBERNETES_VERSIONS = ("1.29", "1.37")
"""The same versions as tests/unit/test_kubernetes_render.py."""
UID = 10001
SPAWNER_RIGHTS: dict[tuple[str, str], set[str]] = {
    ("", "secrets"): {"create", "patch", "delete"},
    ("batch", "jobs"): {"create", "get", "list", "delete"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
}
"""Exactly the API calls of the Kubernetes spawner (tests/integration/test_kubernetes.py checks
every call it makes against role.yaml): widening this needs a reason."""
TOKEN = "test-api-token"


# --- helpers ------------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(KUBERNETES.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization() -> dict[str, Any]:
    return documents(KUBERNETES / "kustomization.yaml")[0]


def objects() -> list[dict[str, Any]]:
    """Every Kubernetes object of the folder (the kustomization is no object)."""
    return [
        doc
        for path in manifest_files()
        if path.name != "kustomization.yaml"
        for doc in documents(path)
    ]


def the(kind: str) -> dict[str, Any]:
    found = [obj for obj in objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    containers = the("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def option(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} given {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def build_app(token: str | None = None) -> tuple[FastAPI, Store]:
    store = Store("sqlite://")
    return create_app(ClusterManager(store, ServiceSettings(api_token=token))), store


def route_paths(app: FastAPI) -> set[str]:
    """The GET routes of the app, from its OpenAPI schema (included routers are nested)."""
    return {path for path, methods in app.openapi()["paths"].items() if "get" in methods}


async def get_status(app: FastAPI, path: str, token: str | None = None) -> int:
    """The status of ``GET path``, sent straight to the ASGI app (no lifespan, no socket)."""
    headers = [(b"host", b"clientswarm")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        assert stages, f"{instruction} before the first FROM"
        stages[-1].append((instruction, arguments.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


# --- Kubernetes: schemas and kustomization ------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "path",
    [p for p in manifest_files() if p.name not in OPTIONAL | {"kustomization.yaml"}],
    ids=lambda p: p.name,
)
def test_manifests_are_valid_kubernetes(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path.name} holds no object"
    for obj in docs:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the message
            pytest.fail(f"{path.name}: not valid Kubernetes {version}: {exc.message} at {exc.path}")


def test_every_manifest_says_what_it_is_for() -> None:
    for path in manifest_files():
        assert path.read_text().startswith("# "), f"{path.name} has no comment header"


def test_every_namespaced_object_names_the_namespace() -> None:
    for obj in objects():
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_optional_ones() -> None:
    kust = kustomization()
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kust["kind"] == "Kustomization"
    assert kust["namespace"] == NAMESPACE
    resources = kust["resources"]
    assert len(resources) == len(set(resources)), "a resource is listed twice"
    for name in resources:
        assert (KUBERNETES / name).is_file(), f"{name} is listed but does not exist"
    expected = {p.name for p in manifest_files()} - OPTIONAL - {"kustomization.yaml"}
    assert set(resources) == expected
    for name in OPTIONAL:
        assert (KUBERNETES / name).is_file()


def test_kustomization_labels_leave_selectors_alone_and_the_image_is_settable() -> None:
    kust = kustomization()
    assert kust["labels"] == [
        {"pairs": {"app.kubernetes.io/part-of": "clientswarm"}, "includeSelectors": False}
    ]
    images = {image["name"]: image for image in kust["images"]}
    assert "clientswarm" in images
    name = container()["image"].rpartition(":")[0]
    assert name == "clientswarm", "kustomize's images entry must match the Deployment's image"


# --- Kubernetes: least rights -------------------------------------------------------------------


def test_role_grants_exactly_the_spawners_calls() -> None:
    role = the("Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected fields in {rule}"
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "*" not in rule["apiGroups"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == SPAWNER_RIGHTS
    assert not [obj for obj in objects() if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_role_binding_ties_the_role_to_the_service_account() -> None:
    binding = the("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": the("Role")["metadata"]["name"],
    }
    account = the("ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


# --- Kubernetes: the Deployment -----------------------------------------------------------------


def test_deployment_runs_one_writer_as_the_images_non_root_user() -> None:
    deployment = the("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == security["runAsGroup"] == security["fsGroup"] == UID
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert dockerfile_user() == (str(UID), str(UID))
    box = container()["securityContext"]
    assert box["allowPrivilegeEscalation"] is False
    assert box["readOnlyRootFilesystem"] is True
    assert box["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in box and "runAsUser" not in box


def test_deployment_uses_the_service_account_and_volume_of_the_folder() -> None:
    pod = the("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == the("ServiceAccount")["metadata"]["name"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert set(claims.values()) == {the("PersistentVolumeClaim")["metadata"]["name"]}
    assert the("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    assert claims[mounts["/data"]] == "clientswarm-data"
    assert option(container()["args"], "--data-dir") == "/data"
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert mounts["/tmp"] in empty_dirs, "a read-only root filesystem needs a writable /tmp"


def test_deployment_takes_its_token_from_a_secret_only() -> None:
    env = container()["env"]
    for var in env:
        if "TOKEN" in var["name"].upper():
            assert "value" not in var, f"{var['name']} must not be a plain value"
            assert "secretKeyRef" in var["valueFrom"]
    tokens = {var["name"]: var for var in env}
    assert tokens["CLIENTSWARM_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "clientswarm-api-token",
        "key": "token",
    }
    assert not [obj for obj in objects() if obj["kind"] == "Secret"], "never ship a token"


def test_deployment_serves_on_all_addresses_of_the_services_port() -> None:
    args = container()["args"]
    assert args[0] == "serve"
    assert option(args, "--host") == "0.0.0.0"
    port = int(option(args, "--port"))
    assert container()["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    service_port = the("Service")["spec"]["ports"][0]
    assert service_port["name"] == "http"
    assert service_port["targetPort"] in ("http", port)


def test_advertise_url_is_the_services_cluster_address() -> None:
    service = the("Service")
    url = urlsplit(option(container()["args"], "--advertise-url"))
    assert url.scheme == "http"
    host = url.hostname or ""
    name, namespace, *rest = host.split(".")
    assert name == service["metadata"]["name"]
    assert namespace == service["metadata"]["namespace"]
    assert rest in (["svc"], ["svc", "cluster", "local"])
    assert url.port in [p["port"] for p in service["spec"]["ports"]]


def test_service_selects_the_deployments_pods() -> None:
    deployment = the("Deployment")["spec"]
    service = the("Service")
    pod_labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "service"
    assert pod_labels["app.kubernetes.io/component"] == "service", (
        "worker pods are component=worker; the service's pods must not look like them"
    )


async def test_probes_hit_an_open_route_of_the_app() -> None:
    app, store = build_app(TOKEN)
    try:
        paths = route_paths(app)
        for probe in ("readinessProbe", "livenessProbe"):
            check = container()[probe]["httpGet"]
            assert check["path"] in paths, f"{probe} path {check['path']} is no route"
            assert check["port"] in ("http", 8080)
            # kubelet sends no token: the probe route must answer without one
            assert await get_status(app, check["path"]) == 200
    finally:
        store.close()


# --- Kubernetes: the ServiceMonitor -------------------------------------------------------------


async def test_service_monitor_scrapes_the_metrics_route_with_the_token() -> None:
    monitor = the("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = the("Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["interval"] == "15s"
    app, store = build_app(TOKEN)
    try:
        assert endpoint["path"] in route_paths(app)
        # /metrics is behind the API token, so the ServiceMonitor must send it
        assert await get_status(app, endpoint["path"]) == 401
        assert await get_status(app, endpoint["path"], TOKEN) == 200
    finally:
        store.close()
    secret = container()["env"][0]["valueFrom"]["secretKeyRef"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": secret["name"], "key": secret["key"]},
    }


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_user() -> tuple[str, str]:
    users = instructions(dockerfile_stages()[-1], "USER")
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    return user, group


def test_dockerfile_final_stage_runs_as_numeric_non_root_user() -> None:
    user, group = dockerfile_user()
    assert user.isdigit() and group.isdigit(), "runAsNonRoot can only check a numeric USER"
    assert int(user) == UID and int(group) == UID
    final = dockerfile_stages()[-1]
    setup = " ".join(instructions(final, "RUN"))
    assert f"--uid {UID}" in setup and f"--gid {UID}" in setup
    assert f"chown {UID}:{UID} /data" in setup
    assert instructions(final, "WORKDIR")[-1] == "/data"


def test_dockerfile_final_stage_has_no_build_tools() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "expected a multi-stage build"
    final = stages[-1]
    assert instructions(final, "FROM") == ["python:3.11-slim"]
    text = " ".join(arguments for _, arguments in final)
    for forbidden in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert forbidden not in text, f"{forbidden!r} in the final stage"
    copies = instructions(final, "COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the final stage copies the venv only"
    envs = " ".join(instructions(final, "ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in envs
    assert "PYTHONUNBUFFERED=1" in envs


def test_dockerfile_builds_with_the_pinned_constraints() -> None:
    builder = dockerfile_stages()[0]
    assert instructions(builder, "FROM") == ["python:3.11-slim AS builder"]
    installs = [run for run in instructions(builder, "RUN") if "pip install" in run]
    assert installs, "the builder installs nothing"
    assert all("-c constraints.txt" in shlex.join(shlex.split(run)) for run in installs)
    copied = " ".join(instructions(builder, "COPY"))
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "src/"):
        assert needed in copied


def installed_extras(install: str) -> set[str]:
    """The extras of ``pip install … '.[a,b]'`` (the last argument), checked to be declared."""
    target = shlex.split(install)[-1]
    assert target == "." or (target.startswith(".[") and target.endswith("]")), target
    extras = set(target[2:-1].split(",")) if target != "." else set()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras <= set(declared["optional-dependencies"]), "an extra pyproject.toml lacks"
    return extras


def test_dockerfile_installs_the_extras_of_a_service_in_kubernetes() -> None:
    # The service in the cluster starts the worker Jobs with lightkube and may keep a shared
    # store on PostgreSQL; neither is in the base install.
    builder = dockerfile_stages()[0]
    (install,) = [run for run in instructions(builder, "RUN") if "pip install" in run]
    assert {"kubernetes", "postgres"} <= installed_extras(install)


def test_dockerfile_runs_the_cli_and_serves_the_deployments_port() -> None:
    final = dockerfile_stages()[-1]
    assert yaml.safe_load(instructions(final, "ENTRYPOINT")[-1]) == ["clientswarm"]
    command = yaml.safe_load(instructions(final, "CMD")[-1])
    assert command[0] == "serve"
    assert option(command, "--host") == "0.0.0.0"
    assert instructions(final, "EXPOSE") == [option(command, "--port")]
    assert option(command, "--data-dir") == "/data"
    labels = " ".join(instructions(final, "LABEL"))
    for key in ("title", "description", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for name in (".venv", ".git", "tests", "bench", "results", "clientswarm-data"):
        assert name in ignored
    for needed in ("src", "pyproject.toml", "constraints.txt", "README.md"):
        assert needed not in ignored


# --- Apptainer ----------------------------------------------------------------------------------


def apptainer_sections() -> tuple[dict[str, str], dict[str, str]]:
    """The definition's header keywords and its %sections (name to body)."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in APPTAINER.read_text().splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip() and not line.startswith("#"):
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
    return header, {name: "\n".join(body) for name, body in sections.items()}


def test_apptainer_definition_installs_with_the_constraints_and_runs_the_cli() -> None:
    header, sections = apptainer_sections()
    assert header == {"Bootstrap": "docker", "From": "python:3.11-slim"}
    assert set(sections) >= {"files", "post", "environment", "runscript", "labels", "help"}
    copied = {line.split()[0] for line in sections["files"].splitlines() if line.strip()}
    assert copied == {"pyproject.toml", "constraints.txt", "README.md", "src"}
    post = sections["post"]
    assert "python -m venv /opt/venv" in post
    assert "pip install" in post and "-c constraints.txt" in post
    (install,) = [line for line in post.splitlines() if "pip install" in line]
    assert "postgres" in installed_extras(install)  # a --store on a database server
    assert "rm -rf /opt/clientswarm-src" in post
    assert "PATH=/opt/venv/bin:$PATH" in sections["environment"]
    assert [line.strip() for line in sections["runscript"].splitlines() if line.strip()] == [
        'exec clientswarm "$@"'
    ]
    assert "apptainer build clientswarm.sif deploy/apptainer/clientswarm.def" in sections["help"]
    assert "python -m clientswarm.worker" in sections["help"]
