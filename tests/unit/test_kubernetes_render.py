"""What the Kubernetes spawner creates, rendered purely, checked against golden files and
against the official Kubernetes OpenAPI schemas (shipped by ``kubernetes-validate``).

Regenerate the golden files after an intended change with
``CLIENTSWARM_UPDATE_GOLDEN=1 pytest tests/unit/test_kubernetes_render.py`` and review the diff.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from clientswarm.config.loader import validate_config_data
from clientswarm.config.spawners import KubernetesSpawnerConfig
from clientswarm.errors import ConfigError, SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch
from clientswarm.spawners.kubernetes import (
    KubernetesSpawner,
    render_objects,
    render_submission,
    render_yaml,
)
from clientswarm.spawners.kubernetes.render import (
    cluster_selector,
    owner_reference,
    redact_object,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "kubernetes"
TOKEN = "very-secret-token"
KUBERNETES_VERSIONS = ("1.29", "1.37")
"""Validated against the oldest Kubernetes with backoffLimitPerIndex on by default, and the
newest that kubernetes-validate ships."""


def launch(options: dict[str, Any] | None = None, **overrides: Any) -> ClusterLaunch:
    fields: dict[str, Any] = {
        "cluster_id": "abc123",
        "service_url": "http://10.0.0.5:8080",
        "token": TOKEN,
        "log_dir": "/var/lib/clientswarm/logs/abc123",
        "python": "/opt/venv/bin/python",
        "options": KubernetesSpawnerConfig.model_validate(
            {
                "kind": "kubernetes",
                "image": "ghcr.io/acme/clientswarm:1.0",
                **(options or {}),
                "workers": 4,
            }
        ),
    }
    fields.update(overrides)
    return ClusterLaunch(**fields)


def config_of(spec: ClusterLaunch) -> KubernetesSpawnerConfig:
    assert isinstance(spec.options, KubernetesSpawnerConfig)
    return spec.options


def objects_of(options: dict[str, Any] | None = None, **overrides: Any) -> list[dict[str, Any]]:
    spec = launch(options, **overrides)
    return render_objects(spec, config_of(spec))


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CLIENTSWARM_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with CLIENTSWARM_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"
    assert TOKEN not in text


ALL_OPTIONS: dict[str, Any] = {
    "namespace": "loadtest",
    "workers": 8,
    "resources": {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": 2, "memory": "2Gi", "nvidia.com/gpu": 1},
    },
    "node_selector": {"node.kubernetes.io/instance-type": "m5.xlarge", "pool": "clients"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "loadtest", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ],
    "service_account": "clientswarm-worker",
    "image_pull_secrets": ["ghcr-pull"],
    "env": [
        {"name": "HF_HOME", "value": "/tmp/hf"},
        {"name": "TARGET_API_KEY", "value_from_secret": {"name": "target-api", "key": "api-key"}},
    ],
    "labels": {"team": "inference", "example.com/cost-center": "42"},
    "annotations": {"example.com/owner": "alice@example.com"},
    "ttl_seconds_after_finished": 3600,
    "active_deadline_s": 7200,
    "advertise_url": "http://clientswarm.loadtest.svc:8080",
    "python": "/opt/venv/bin/python",
}


def validate_schema(obj: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the failure message
        pytest.fail(f"{obj['kind']} is not valid Kubernetes {version}: {exc.message} at {exc.path}")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("minimal.yaml", {}),
        ("all_options.yaml", ALL_OPTIONS),
    ],
)
def test_objects_match_golden_files(name: str, options: dict[str, Any]) -> None:
    assert_golden(name, render_yaml(objects_of(options)))


def test_render_submission_says_what_it_is_with_the_token_redacted() -> None:
    spec = launch()
    text = render_submission(spec, config_of(spec))
    assert_golden("submission.yaml", text)
    assert text.startswith("# clientswarm cluster abc123: 4 worker(s) as one Indexed Job")
    assert next(iter(yaml.safe_load_all(text)))["stringData"] == {"token": "<redacted>"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "options",
    [{}, ALL_OPTIONS],
    ids=["minimal", "all_options"],
)
def test_every_object_is_valid_against_the_kubernetes_schemas(
    options: dict[str, Any], version: str
) -> None:
    objects = objects_of(options)
    for obj in objects:
        validate_schema(obj, version)
    # What a user would `kubectl apply` (redacted, through YAML) is valid too.
    for obj in yaml.safe_load_all(render_yaml(objects)):
        validate_schema(obj, version)


def test_the_schema_check_does_catch_a_bad_object() -> None:
    job = objects_of()[1]
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.29", strict=True)
    job = objects_of()[1]
    job["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.29", strict=True)


def test_secret_first_then_an_indexed_job() -> None:
    secret, job = objects_of()
    assert (secret["kind"], secret["apiVersion"], secret["type"]) == ("Secret", "v1", "Opaque")
    assert secret["metadata"]["name"] == "clientswarm-abc123-token"
    assert "namespace" not in secret["metadata"]  # kubectl's (or the service's) namespace
    assert secret["stringData"] == {"token": TOKEN}
    assert (job["kind"], job["apiVersion"]) == ("Job", "batch/v1")
    assert job["metadata"]["name"] == "clientswarm-abc123"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["backoffLimitPerIndex"] == 0
    assert "ttlSecondsAfterFinished" not in spec and "activeDeadlineSeconds" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["name"] == "worker"
    assert container["image"] == "ghcr.io/acme/clientswarm:1.0"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # No --index: the worker reads $JOB_COMPLETION_INDEX, which Kubernetes sets.
    assert container["command"] == [
        "python",
        "-m",
        "clientswarm.worker",
        "--service",
        "http://10.0.0.5:8080",
        "--cluster",
        "abc123",
    ]


def test_token_reaches_the_pods_only_through_the_secret() -> None:
    secret, job = objects_of(ALL_OPTIONS)
    assert TOKEN not in yaml.safe_dump(job)
    assert TOKEN not in repr(job)
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0] == {
        "name": "CLIENTSWARM_WORKER_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "clientswarm-abc123-token", "key": "token"}},
    }
    assert all("value" not in var for var in env if var["name"] == "CLIENTSWARM_WORKER_TOKEN")
    assert secret["stringData"]["token"] == TOKEN


def test_user_env_takes_values_and_secret_references() -> None:
    job = objects_of(ALL_OPTIONS)[1]
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[1:] == [
        {"name": "HF_HOME", "value": "/tmp/hf"},
        {
            "name": "TARGET_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "target-api", "key": "api-key"}},
        },
    ]


def test_yaml_redacts_the_secret_unless_asked_not_to() -> None:
    objects = objects_of()
    redacted = render_yaml(objects)
    assert TOKEN not in redacted
    docs = list(yaml.safe_load_all(redacted))
    assert [doc["kind"] for doc in docs] == ["Secret", "Job"]
    assert docs[0]["stringData"] == {"token": "<redacted>"}
    assert docs[1] == objects[1]
    clear = list(yaml.safe_load_all(render_yaml(objects, redact=False)))
    assert clear == objects
    assert objects[0]["stringData"] == {"token": TOKEN}  # rendering never changes the objects
    assert redact_object({"kind": "Secret", "data": {"a": "eA=="}})["data"] == {"a": "<redacted>"}


def test_labels_find_every_object_and_pod_of_the_cluster() -> None:
    secret, job = objects_of(ALL_OPTIONS)
    ours = {
        "app.kubernetes.io/name": "clientswarm",
        "app.kubernetes.io/component": "worker",
        "clientswarm.io/cluster": "abc123",
    }
    user = {"team": "inference", "example.com/cost-center": "42"}
    for metadata in (secret["metadata"], job["metadata"], job["spec"]["template"]["metadata"]):
        assert metadata["labels"] == {**user, **ours}
    assert job["metadata"]["annotations"] == {"example.com/owner": "alice@example.com"}
    assert job["spec"]["template"]["metadata"]["annotations"] == job["metadata"]["annotations"]
    # Kubernetes generates the Job's own selector (controller-uid); clientswarm selects by label.
    assert "selector" not in job["spec"]
    key, _, value = cluster_selector("abc123").partition("=")
    assert job["spec"]["template"]["metadata"]["labels"][key] == value


def test_all_options_reach_the_job() -> None:
    job = objects_of(ALL_OPTIONS)[1]
    spec = job["spec"]
    assert job["metadata"]["namespace"] == "loadtest"
    assert spec["completions"] == spec["parallelism"] == 4  # the launch's count, not the option
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert spec["activeDeadlineSeconds"] == 7200
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "clientswarm-worker"
    assert pod["nodeSelector"] == ALL_OPTIONS["node_selector"]
    assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert pod["tolerations"] == ALL_OPTIONS["tolerations"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    assert container["command"][0] == "/opt/venv/bin/python"
    assert container["command"][4] == "http://clientswarm.loadtest.svc:8080"


SAMPLES_DIR = "/data/samples"


def test_a_files_launch_mounts_the_samples_claim_at_the_services_samples_dir() -> None:
    job = objects_of({"samples_claim": "clientswarm-samples"}, sample_dir=SAMPLES_DIR)[1]
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "samples", "persistentVolumeClaim": {"claimName": "clientswarm-samples"}}
    ]
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": "samples", "mountPath": SAMPLES_DIR}]
    for version in KUBERNETES_VERSIONS:
        validate_schema(job, version)


@pytest.mark.parametrize(
    ("options", "sample_dir"),
    [({"samples_claim": "clientswarm-samples"}, None), ({}, SAMPLES_DIR)],
    ids=["posting-samples", "no-claim"],
)
def test_no_samples_volume_without_both_a_files_launch_and_a_claim(
    options: dict[str, Any], sample_dir: str | None
) -> None:
    pod = objects_of(options, sample_dir=sample_dir)[1]["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]


def test_the_spawner_refuses_a_files_launch_without_a_claim() -> None:
    with pytest.raises(SpawnerError, match=r"needs spawner\.samples_claim .* at /data/samples"):
        asyncio.run(KubernetesSpawner().submit(launch(sample_dir=SAMPLES_DIR)))


def test_a_failed_worker_fails_its_own_index_only_and_is_never_retried() -> None:
    spec = objects_of()[1]["spec"]
    assert spec["backoffLimitPerIndex"] == 0
    assert "backoffLimit" not in spec  # a Job-wide limit would stop the other workers


def test_owner_reference_points_at_the_created_job() -> None:
    job = objects_of()[1]
    job["metadata"]["uid"] = "0b5f0c62-6f5e-4a59-9a53-4a5c1f3b3f11"
    assert owner_reference(job) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "clientswarm-abc123",
        "uid": "0b5f0c62-6f5e-4a59-9a53-4a5c1f3b3f11",
        "blockOwnerDeletion": True,
    }
    secret = objects_of()[0]
    secret["metadata"]["ownerReferences"] = [owner_reference(job)]
    validate_schema(secret, "1.29")


# -- the options in a configuration file ---------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "name": "tiny",
    "target": {"url": "http://127.0.0.1:8000/"},
    "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 10}}],
}
VALID_FIELDS = (
    "valid fields for kind 'kubernetes': kind, preset, image, namespace, workers, resources, "
    "node_selector, tolerations, service_account, image_pull_secrets, env, labels, annotations, "
    "ttl_seconds_after_finished, active_deadline_s, advertise_url, python, samples_claim"
)


def problems_of(spawner: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config_data({**MINIMAL, "spawner": spawner}, source="test.yaml")
    return info.value.problems


def test_a_configuration_file_selects_the_kubernetes_spawner() -> None:
    config = validate_config_data(
        {**MINIMAL, "spawner": {"kind": "kubernetes", "image": "img:1", **ALL_OPTIONS}}
    )
    assert isinstance(config.spawner, KubernetesSpawnerConfig)
    assert config.spawner.workers == 8
    # What the service stores of the configuration validates again.
    again = KubernetesSpawnerConfig.model_validate(config.spawner.model_dump())
    assert again == config.spawner


def test_unknown_option_names_the_valid_ones() -> None:
    (line,) = problems_of({"kind": "kubernetes", "image": "img:1", "namespce": "x"})
    assert line.startswith("spawner.namespce: unknown field 'namespce' (did you mean 'namespace'?)")
    assert line.endswith(VALID_FIELDS)


def test_unknown_option_deeper_down_names_the_valid_ones() -> None:
    (line,) = problems_of(
        {"kind": "kubernetes", "image": "img:1", "resources": {"request": {"cpu": "1"}}}
    )
    assert line.startswith("spawner.resources.request: unknown field 'request'")
    assert "valid fields: requests, limits" in line


def test_image_is_required() -> None:
    (line,) = problems_of({"kind": "kubernetes"})
    assert line.startswith("spawner.image:")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"namespace": "Load_Test"}, "spawner.namespace"),
        ({"resources": {"limits": {"memory": "2 GB"}}}, "not a Kubernetes quantity"),
        ({"labels": {"clientswarm.io/cluster": "x"}}, "is set by clientswarm"),
        ({"labels": {"team": "a b"}}, "label value"),
        ({"env": [{"name": "CLIENTSWARM_WORKER_TOKEN", "value": "x"}]}, "set by clientswarm"),
        ({"env": [{"name": "A"}]}, "exactly one of value and value_from_secret"),
        ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "more than once"),
        ({"tolerations": [{"operator": "Exists", "value": "x"}]}, "takes no value"),
        ({"image_pull_secrets": ["Not_A_Name"]}, "DNS subdomain"),
        ({"samples_claim": "Samples_Claim"}, "spawner.samples_claim"),
        ({"active_deadline_s": 0}, "spawner.active_deadline_s"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any], expected: str) -> None:
    problems = problems_of({"kind": "kubernetes", "image": "img:1", **options})
    assert len(problems) == 1, problems
    assert expected in problems[0]
