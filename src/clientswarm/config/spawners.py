"""Spawner options of the configuration file, discriminated by ``kind``."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from clientswarm.config.base import StrictModel
from clientswarm.config.paths import ConfigPath

_TIME_LIMIT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^UNLIMITED$|^INFINITE$")
_MEMORY = re.compile(r"^\d+[KMGT]?$")
_SBATCH_OPTION = r"^(#SBATCH)?[ \t]*-[^\n]*$"  # for the schema: what _options accepts, or less


class LocalSpawnerConfig(StrictModel):
    """Workers are processes on the service's machine."""

    OPERATOR_ONLY: ClassVar[tuple[str, ...]] = ()

    kind: Literal["local"] = "local"
    workers: int = Field(default=1, ge=1, le=1024, description="Number of worker processes")


class SlurmRestConfig(StrictModel):
    """How to reach slurmrestd: a URL or a unix socket, and a JWT from an env var if needed."""

    url: str | None = Field(default=None, description="e.g. http://slurm-head:6820")
    socket: str | None = Field(default=None, description="e.g. /run/slurmrestd/slurmrestd.socket")
    api_version: str = Field(default="v0.0.38", pattern=r"^v\d+\.\d+\.\d+$")
    jwt_env: str | None = Field(
        default=None, description="Env var holding the JWT (sent as X-SLURM-USER-TOKEN)"
    )
    user_name: str | None = Field(
        default=None, description="X-SLURM-USER-NAME sent with the JWT; default: this user"
    )

    @model_validator(mode="after")
    def _one_endpoint(self) -> SlurmRestConfig:
        if (self.url is None) == (self.socket is None):
            raise ValueError("give exactly one of rest.url and rest.socket")
        return self


PRESET_DESCRIPTION = (
    "Name of a spawner preset of the service (clientswarm serve --spawner-preset NAME=FILE): "
    "the operator's options (setup lines, images, credentials) that a posted configuration may "
    "use but not write; options given here override the preset's other options"
)
PresetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class SlurmSpawnerConfig(StrictModel):
    """Workers are the tasks of one Slurm job array (one task per worker)."""

    OPERATOR_ONLY: ClassVar[tuple[str, ...]] = ("setup", "extra_sbatch", "rest", "submit_via")
    """Options that run code or reach credentials: on a shared service only a preset sets them."""

    kind: Literal["slurm"]
    preset: PresetName | None = Field(default=None, description=PRESET_DESCRIPTION)
    workers: int = Field(default=1, ge=1, le=10_000, description="Array size: one task per worker")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = Field(
        default=None,
        json_schema_extra={"pattern": _TIME_LIMIT.pattern},
        description="sbatch --time, e.g. 30, 1:00:00 or 1-12:00:00",
    )
    cpus_per_worker: int = Field(default=1, ge=1, le=1024, description="sbatch --cpus-per-task")
    mem_per_worker: str | None = Field(
        default=None,
        json_schema_extra={"pattern": _MEMORY.pattern},
        description="sbatch --mem, e.g. 2G",
    )
    nodes: int | None = Field(
        default=None, ge=1, le=1_000_000, description="sbatch --nodes per array task"
    )
    ntasks_per_node: int | None = Field(default=None, ge=1, le=1_000_000)
    extra_sbatch: list[str] = Field(
        default_factory=list,
        json_schema_extra={"items": {"type": "string", "pattern": _SBATCH_OPTION}},
        description="Raw '#SBATCH' options, e.g. '--constraint=gpu'",
    )
    setup: list[str] = Field(
        default_factory=list,
        description="Shell lines run before the worker: module load, source venv/bin/activate",
    )
    container: ConfigPath | None = Field(
        default=None, description="Run the worker with 'apptainer exec IMAGE …'"
    )
    python: ConfigPath | None = Field(
        default=None,
        description="Python interpreter on the compute nodes, with clientswarm installed "
        "(default: the service's own interpreter, for a shared filesystem)",
    )
    advertise_url: str | None = Field(
        default=None, description="How compute nodes reach the service (default: its own URL)"
    )
    submit_via: Literal["cli", "rest"] = "cli"
    rest: SlurmRestConfig | None = None
    log_dir: ConfigPath | None = Field(
        default=None, description="Where array tasks write output (must be on a shared filesystem)"
    )

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not _TIME_LIMIT.match(value):
            raise ValueError("must be a Slurm time: minutes, MM:SS, HH:MM:SS or D-HH:MM:SS")
        return value

    @field_validator("mem_per_worker")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError("must be a Slurm memory size such as 512M or 4G")
        return value

    @field_validator("extra_sbatch")
    @classmethod
    def _options(cls, lines: list[str]) -> list[str]:
        for line in lines:
            option = line.removeprefix("#SBATCH").strip()
            if not option.startswith("-") or "\n" in line:
                raise ValueError(f"{line!r} is not an sbatch option such as '--constraint=gpu'")
        return [line.removeprefix("#SBATCH").strip() for line in lines]

    @model_validator(mode="after")
    def _rest_given(self) -> SlurmSpawnerConfig:
        if self.submit_via == "rest" and self.rest is None:
            raise ValueError("submit_via: rest needs rest: {url: …} or rest: {socket: …}")
        return self


# Kubernetes names: DNS-1123 labels (namespaces, …) and subdomains (secrets, service accounts).
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(
    r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# For the JSON Schema: what the checks below accept (a key's prefix and name are bounded
# together by maxLength, a little stricter than the checks' 253 and 63).
_SUBDOMAIN_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": _DNS_SUBDOMAIN.pattern,
    "maxLength": 253,
}
_QUALIFIED_KEY_SCHEMA: dict[str, Any] = {
    "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    "maxLength": 253,
}
_LABEL_VALUE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": _LABEL_VALUE.pattern,
    "maxLength": 63,
}
RESERVED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/component",
    "clientswarm.io/cluster",
)
"""Labels clientswarm sets on every object it creates (it finds them again by these)."""
RESERVED_ENV = "CLIENTSWARM_WORKER_TOKEN"
"""Set by clientswarm from the cluster's Secret; the ``env`` option may not set it."""


def _check_subdomain(value: str, what: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"{what} must be a DNS subdomain: lower-case letters, digits, '-', '.'")
    return value


def _check_qualified_key(key: str, what: str) -> None:
    """A label, annotation or node-selector key: ``[prefix/]name``."""
    prefix, _, name = key.rpartition("/")
    if prefix:
        _check_subdomain(prefix, f"{what} prefix {prefix!r}")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        raise ValueError(
            f"{what} {key!r} must be [prefix/]name, the name at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )


def _check_labels(labels: dict[str, str], what: str) -> dict[str, str]:
    for key, value in labels.items():
        _check_qualified_key(key, f"{what} key")
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ValueError(
                f"{what} value {value!r} of {key!r} must be at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit"
            )
    return labels


_QUANTITIES_SCHEMA: dict[str, Any] = {
    "propertyNames": _QUALIFIED_KEY_SCHEMA,
    "additionalProperties": {
        "anyOf": [{"type": "string", "pattern": _QUANTITY.pattern}, {"type": "number"}]
    },
}


class KubernetesResourceList(StrictModel):
    """``requests`` and ``limits`` of each worker pod, e.g. ``{cpu: "2", memory: 4Gi}``."""

    requests: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra=_QUANTITIES_SCHEMA,
        description="Resource requests, e.g. {cpu: 500m, memory: 1Gi}",
    )
    limits: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra=_QUANTITIES_SCHEMA,
        description="Resource limits, e.g. {memory: 2Gi, nvidia.com/gpu: 1}",
    )

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _numbers_as_quantities(cls, value: object) -> object:
        # YAML reads ``cpu: 2`` as a number; Kubernetes quantities are strings.
        if isinstance(value, dict):
            return {
                key: str(item)
                if isinstance(item, int | float) and not isinstance(item, bool)
                else item
                for key, item in value.items()
            }
        return value

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for name, quantity in value.items():
            _check_qualified_key(name, "resource name")
            if not _QUANTITY.match(quantity):
                raise ValueError(
                    f"{name}: {quantity!r} is not a Kubernetes quantity such as 500m, 2 or 4Gi"
                )
        return value


class KubernetesToleration(StrictModel):
    """A pod toleration, written as in a Kubernetes manifest (``tolerationSeconds`` or
    ``toleration_seconds``)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(
        default=None, ge=-(2**63), le=2**63 - 1, alias="tolerationSeconds"
    )

    @model_validator(mode="after")
    def _consistent(self) -> KubernetesToleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator: Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect: NoExecute")
        return self

    def manifest(self) -> dict[str, object]:
        """The toleration as the pod spec takes it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class KubernetesSecretKeyRef(StrictModel):
    """One key of a Secret in the cluster's namespace."""

    name: str = Field(description="The Secret's name", json_schema_extra=_SUBDOMAIN_SCHEMA)
    key: str = Field(description="The key in the Secret's data")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_subdomain(value, "a Secret name")


class KubernetesEnvVar(StrictModel):
    """An environment variable of the worker pods: a ``value`` or ``value_from_secret``."""

    name: str = Field(
        json_schema_extra={"pattern": _ENV_NAME.pattern, "not": {"const": RESERVED_ENV}}
    )
    value: str | None = None
    value_from_secret: KubernetesSecretKeyRef | None = Field(
        default=None, description="e.g. {name: target-api, key: api-key} for the target's API key"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid environment variable name")
        if value == RESERVED_ENV:
            raise ValueError(f"{RESERVED_ENV} is set by clientswarm from the cluster's Secret")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> KubernetesEnvVar:
        if (self.value is None) == (self.value_from_secret is None):
            raise ValueError(f"env {self.name}: give exactly one of value and value_from_secret")
        return self


class KubernetesSpawnerConfig(StrictModel):
    """Workers are the pods of one Indexed Job (one completion index per worker)."""

    OPERATOR_ONLY: ClassVar[tuple[str, ...]] = (
        "image",
        "python",
        "env",
        "service_account",
        "image_pull_secrets",
        "labels",
        "annotations",
        "samples_claim",
    )
    """Options that choose the code the pods run or what they may reach (Secrets, a service
    account, labels and annotations that policies and admission webhooks act on, storage): on a
    shared service only a preset sets them."""

    kind: Literal["kubernetes"]
    preset: PresetName | None = Field(default=None, description=PRESET_DESCRIPTION)
    image: str | None = Field(
        default=None,
        validate_default=True,
        min_length=1,
        description="Container image with clientswarm installed (required, here or in the preset)",
    )
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=_DNS_LABEL,
        description="Namespace of the Job (default: the service's own when it runs in a pod, "
        "else the kubeconfig context's, as kubectl does)",
    )
    workers: int = Field(
        default=1, ge=1, le=10_000, description="Pods: completions = parallelism of the Job"
    )
    resources: KubernetesResourceList | None = None
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={
            "propertyNames": _QUALIFIED_KEY_SCHEMA,
            "additionalProperties": _LABEL_VALUE_SCHEMA,
        },
    )
    tolerations: list[KubernetesToleration] = Field(default_factory=list)
    service_account: str | None = Field(
        default=None,
        json_schema_extra={"anyOf": [_SUBDOMAIN_SCHEMA, {"type": "null"}]},
        description="serviceAccountName of the pods (default: the namespace's)",
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list,
        json_schema_extra={"items": _SUBDOMAIN_SCHEMA},
        description="Names of docker-registry Secrets in the namespace",
    )
    env: list[KubernetesEnvVar] = Field(default_factory=list)
    labels: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={
            "propertyNames": {**_QUALIFIED_KEY_SCHEMA, "not": {"enum": list(RESERVED_LABELS)}},
            "additionalProperties": _LABEL_VALUE_SCHEMA,
        },
        description="Extra labels of the Job, its pods and the Secret",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": _QUALIFIED_KEY_SCHEMA},
        description="Extra annotations of the Job and its pods",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="Delete the Job this long after it finishes"
    )
    active_deadline_s: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="activeDeadlineSeconds: the Job fails after this long",
    )
    advertise_url: str | None = Field(
        default=None, description="How the pods reach the service (default: its own URL)"
    )
    python: str = Field(default="python", min_length=1, description="Interpreter in the image")
    samples_claim: str | None = Field(
        default=None,
        json_schema_extra={"anyOf": [_SUBDOMAIN_SCHEMA, {"type": "null"}]},
        description="sample_path: files: a ReadWriteMany PersistentVolumeClaim that the "
        "service's pod mounts at its samples directory (<data dir>/samples); every worker pod "
        "mounts it at the same path",
    )

    @field_validator("image")
    @classmethod
    def _image_given(cls, image: str | None, info: ValidationInfo) -> str | None:
        if image is None and info.data.get("preset") is None:
            raise ValueError(
                "required: the container image with clientswarm installed (or a preset's)"
            )
        return image

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str | None) -> str | None:
        return None if value is None else _check_subdomain(value, "service_account")

    @field_validator("samples_claim")
    @classmethod
    def _samples_claim(cls, value: str | None) -> str | None:
        return None if value is None else _check_subdomain(value, "samples_claim")

    @field_validator("image_pull_secrets")
    @classmethod
    def _pull_secrets(cls, names: list[str]) -> list[str]:
        return [_check_subdomain(name, "an image pull secret name") for name in names]

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by clientswarm")
        return _check_labels(labels, "label")

    @field_validator("node_selector")
    @classmethod
    def _node_selector(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels, "node_selector")

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        for key in annotations:
            _check_qualified_key(key, "annotation key")
        return annotations

    @field_validator("env")
    @classmethod
    def _unique_env(cls, env: list[KubernetesEnvVar]) -> list[KubernetesEnvVar]:
        names = [var.name for var in env]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"env sets {', '.join(twice)} more than once")
        return env


SpawnerConfig = Annotated[
    LocalSpawnerConfig | SlurmSpawnerConfig | KubernetesSpawnerConfig,
    Field(discriminator="kind"),
]
