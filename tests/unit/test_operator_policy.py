"""The operator's policy, piece by piece: target rules, path scopes, presets, variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.config.paths import FileScope, path_values
from clientswarm.errors import ConfigError
from clientswarm.service.admission import admit
from clientswarm.service.policy import OperatorPolicy
from clientswarm.service.presets import PresetError, load_preset
from clientswarm.service.ratelimit import TokenBucket
from clientswarm.service.targets import TargetRules


@pytest.mark.parametrize(
    ("rules", "url", "allowed"),
    [
        ((), "http://127.0.0.1:8000", True),
        ((), "http://127.9.9.9", True),
        ((), "http://localhost:8000/v1", True),
        ((), "http://[::1]:8000", True),
        ((), "http://10.0.0.1:8000", False),
        ((), "http://127.0.0.1.nip.io", False),  # a name that merely starts like loopback
        ((), "http://0.0.0.0:8000", False),
        (("10.0.0.0/8",), "http://10.20.30.40:1234", True),
        (("10.0.0.0/8",), "http://11.0.0.1", False),
        (("vllm.internal:8000",), "http://vllm.internal:8000", True),
        (("vllm.internal:8000",), "http://VLLM.internal.:8000", True),
        (("vllm.internal:8000",), "http://vllm.internal:8001", False),
        (("vllm.internal",), "https://vllm.internal", True),
        (("*.svc.cluster.local",), "http://vllm.ai.svc.cluster.local:8000", True),
        (("*.svc.cluster.local",), "http://svc.cluster.local.evil.com", False),
        (("[::1]:8000",), "http://[::1]:8000", True),
        (("[::1]:8000",), "http://[::1]:8001", False),
        (("*",), "http://203.0.113.9:9", True),
        (("10.0.0.0/8",), "http://10.0.0.1:99999", False),  # an invalid port: refused
    ],
)
def test_target_rules(rules: tuple[str, ...], url: str, allowed: bool) -> None:
    assert TargetRules.parse(rules).allows(url) is allowed


@pytest.mark.parametrize("rule", ["", "http://x", "a b", "x:0", "x:70000", "[::1"])
def test_bad_target_rules_say_what_is_accepted(rule: str) -> None:
    with pytest.raises(ValueError, match="--allow-target"):
        TargetRules.parse([rule])


def test_a_confined_scope_resolves_symlinks_and_dots_before_deciding(tmp_path: Path) -> None:
    root = tmp_path / "inputs"
    (root / "sub").mkdir(parents=True)
    (root / "data.csv").write_text("x")
    (root / "out").symlink_to("/etc")
    (root / "in").symlink_to(root / "data.csv")
    scope = FileScope.confined([root])
    assert scope.resolve("data.csv") == root / "data.csv"
    assert scope.resolve("sub/../in") == root / "data.csv"
    assert scope.resolve(str(root / "sub")) == root / "sub"
    for escape in ["out/passwd", "../inputs2", "sub/../../x", "/etc/passwd", "~/.ssh/id_rsa"]:
        with pytest.raises(ConfigError, match="resolves outside"):
            scope.resolve(escape)
    # a root that is itself a symlink counts as where it points
    (tmp_path / "link").symlink_to(root)
    assert FileScope.confined([tmp_path / "link"]).resolve("data.csv") == root / "data.csv"


def test_every_path_field_is_found() -> None:
    config = validate_config_data(
        {
            "name": "p",
            "target": {"url": "http://h"},
            "spawner": {"kind": "slurm", "log_dir": "l", "container": "c.sif", "python": "py"},
            "groups": [
                {
                    "name": "g",
                    "interaction": {"kind": "chat", "dataset": {"path": "d"}, "tokenizer": "t"},
                    "stop": {"requests": 1},
                }
            ],
        }
    )
    assert sorted(path_values(config)) == [
        ("groups[0].interaction.dataset.path", "d"),
        ("groups[0].interaction.tokenizer", "t"),
        ("spawner.container", "c.sif"),
        ("spawner.log_dir", "l"),
        ("spawner.python", "py"),
    ]


def test_workers_get_a_minimal_environment() -> None:
    environ = {
        "PATH": "/bin",
        "HOME": "/h",
        "SECRET": "s",
        "CLIENTSWARM_API_TOKEN": "t",
        "VLLM_KEY": "k",
        "PYTHONPATH": "/p",
    }
    config = validate_config_data(
        {
            "name": "p",
            "target": {"url": "http://h", "api_key_env": "VLLM_KEY"},
            "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}],
        }
    )
    shared = OperatorPolicy(worker_env=("PYTHONPATH",), target_env=("VLLM_*",))
    assert shared.worker_environment(config, environ) == {
        "PATH": "/bin",
        "HOME": "/h",
        "PYTHONPATH": "/p",
        "VLLM_KEY": "k",
    }
    # clientswarm run: the user's own environment, the service's API token aside
    everything = OperatorPolicy.unrestricted().worker_environment(config, environ)
    assert everything == {k: v for k, v in environ.items() if k != "CLIENTSWARM_API_TOKEN"}
    assert not OperatorPolicy(target_env=("*",)).env_name_allowed("CLIENTSWARM_WORKER_TOKEN")


def test_a_preset_is_checked_when_the_service_starts(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    for text, message in [
        ("kind: slurm\nsetup: [ok]\n", None),
        ("kind: slurm\nworkers: 4\n", "workers is each configuration's choice"),
        ("kind: slurm\npreset: other\n", "cannot name another preset"),
        ("kind: slurm\nsetupp: []\n", "spawner.setupp: unknown field"),
        ("- a list\n", "expected a mapping of spawner options with a kind"),
        ("kind: [\n", "invalid YAML"),
    ]:
        path.write_text(text)
        if message is None:
            assert load_preset("p", path)["setup"] == ["ok"]
        else:
            with pytest.raises(PresetError, match=message):
                load_preset("p", path)
    with pytest.raises(PresetError, match="cannot read the file"):
        load_preset("p", tmp_path / "missing.yaml")


def test_posted_options_override_a_preset_but_never_its_code(tmp_path: Path) -> None:
    preset = {"kind": "slurm", "setup": ["module load cuda"], "partition": "gpu", "qos": "low"}
    policy = OperatorPolicy(spawner_presets={"gpu": preset}, operator_options_open=False)
    config = validate_config_data(
        {
            "name": "p",
            "target": {"url": "http://h"},
            "spawner": {"kind": "slurm", "preset": "gpu", "workers": 3, "qos": "high"},
            "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}],
        }
    )
    options = admit(config, policy).spawner.model_dump()
    assert options["setup"] == ["module load cuda"]
    assert (options["partition"], options["qos"], options["workers"]) == ("gpu", "high", 3)


def test_a_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=2.0, burst=2.0, clock=lambda: now[0])
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.take() == 0.0
    now[0] = 100.0
    assert [bucket.take(), bucket.take(), bucket.take() > 0] == [0.0, 0.0, True]
