"""User-defined interactions end to end: loaded three ways, run by real workers through the
service against the real simulator, their steps measured like the built-ins."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from service_process import CLI, ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

JOURNEYS = textwrap.dedent(
    '''
    """Journeys for the tests."""
    from pydantic import BaseModel

    from clientswarm import Context, Interaction


    class Ask(Interaction):
        """Check the target's health, then ask one question."""

        class Params(BaseModel):
            question: str = "What is HPC?"
            max_tokens: int = 8

        async def run(self, ctx: Context) -> None:
            async with ctx.measure("health"):
                await ctx.http.get("/health")
            answer = await ctx.chat(
                [{"role": "user", "content": self.params.question}],
                max_tokens=self.params.max_tokens,
            )
            assert answer.text, "an empty answer"


    class Broken(Interaction):
        """Fails in a span, then on a missing route."""

        async def run(self, ctx: Context) -> None:
            if ctx.rng.random() < 0.5:
                async with ctx.measure("boom"):
                    raise ValueError("the retriever exploded")
            async with ctx.measure("missing"):
                await ctx.http.get("/no/such/route")


    async def ping(ctx: Context) -> None:
        """A function interaction: one completion."""
        await ctx.completion("ping", max_tokens=4, name="ping")
    '''
)


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with simulator("--ttft-ms", "20", "--itl-ms", "4") as url:
        yield url


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a module and an installed-looking distribution offering an entry point."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "cs_journeys.py").write_text(JOURNEYS)
    dist = root / "cs_journeys-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cs-journeys\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[clientswarm.interactions]\nask = cs_journeys:Ask\nnot-one = cs_journeys:BaseModel\n"
    )
    return root


def cluster(target: str, *groups: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "custom",
        "seed": 3,
        "target": {"url": target, "model": "mock-model", "timeout_s": 10},
        "spawner": {"kind": "local", "workers": 1},
        "groups": list(groups),
    }


def group(name: str, interaction: dict[str, Any], requests: int = 12) -> dict[str, Any]:
    return {
        "name": name,
        "clients": 2,
        "interaction": interaction,
        "load": {"kind": "closed"},
        "stop": {"requests": requests},
    }


@pytest.fixture
def service(tmp_path: Path, plugins: Path) -> Iterator[ServiceProcess]:
    # The operator lets configurations use the plugins' module and the test's folder, and
    # passes PYTHONPATH on to the workers (and to the process that checks user code).
    extra = ("--allow-module", "cs_journeys", "--worker-env", "PYTHONPATH")
    extra += ("--allow-path", str(tmp_path))
    with ServiceProcess(tmp_path / "svc", env={"PYTHONPATH": str(plugins)}, extra=extra) as svc:
        yield svc


def run_to_end(service: ServiceProcess, config: dict[str, Any]) -> dict[str, Any]:
    status, created = service.api("POST", "/clusters", config)
    assert status == 201, created
    view = service.wait_status(created["id"], timeout_s=90)
    assert view["status"] == "completed", view
    status, results = service.api("GET", f"/clusters/{created['id']}/results")
    assert status == 200
    return dict(results)


def test_a_module_an_entry_point_and_a_function_run_with_steps_measured(
    service: ServiceProcess, target: str
) -> None:
    results = run_to_end(
        service,
        cluster(
            target,
            group("module", {"kind": "cs_journeys:Ask", "question": "Why?"}),
            group("entry", {"kind": "ask", "name": "asking", "max_tokens": 6}),
            group("function", {"kind": "cs_journeys:ping"}),
            group("builtin", {"kind": "chat", "prompts": ["Why?"], "max_tokens": 8}),
        ),
    )
    module = results["groups"]["module"]
    assert module["requests"] == module["succeeded"] == 12  # journeys, not steps
    assert set(module["steps"]) == {"health", "chat"}
    chat = module["steps"]["chat"]
    assert chat["requests"] == 12 and chat["output_tokens"] == 12 * 8
    assert 0.015 < chat["ttft_s"]["p50"] < 0.05  # the simulator's 20 ms
    assert 0.003 < chat["itl_s"]["p50"] < 0.006  # and its 4 ms
    assert module["ttft_s"]["p50"] > chat["ttft_s"]["p50"]  # the journey waited for health too
    # The helper measures the same request as the built-in chat does, the same way.
    builtin = results["groups"]["builtin"]
    assert (chat["input_tokens"], chat["output_tokens"]) == (
        builtin["input_tokens"],
        builtin["output_tokens"],
    )
    # Both against the simulator's 20 ms on a shared machine: equal within its noise.
    assert abs(chat["ttft_s"]["p50"] - builtin["ttft_s"]["p50"]) < 0.005
    assert abs(chat["itl_s"]["p50"] - builtin["itl_s"]["p50"]) < 0.0005
    entry = results["groups"]["entry"]
    assert entry["succeeded"] == 12 and entry["steps"]["chat"]["output_tokens"] == 12 * 6
    assert results["groups"]["function"]["steps"]["ping"]["output_tokens"] == 12 * 4

    samples = service.request("GET", f"/clusters/{_last_id(service)}/samples?format=jsonl")[1]
    rows = [json.loads(line) for line in samples.splitlines()]
    names = {(r["group"], r["name"], r["step"]) for r in rows}
    assert ("entry", "asking", False) in names and ("module", "Ask", False) in names
    assert ("function", "ping", True) in names


def _last_id(service: ServiceProcess) -> str:
    _, clusters = service.api("GET", "/clusters")
    return str(clusters[0]["id"])


def test_the_catalogue_lists_entry_points_with_their_parameters(service: ServiceProcess) -> None:
    status, catalogue = service.api("GET", "/interactions")
    assert status == 200
    ask = next(entry for entry in catalogue if entry["kind"] == "ask")
    assert ask["source"] == "entry point"
    assert ask["description"] == "Check the target's health, then ask one question."
    assert set(ask["parameters"]["properties"]) == {"question", "max_tokens"}
    assert "not-one" not in {entry["kind"] for entry in catalogue}  # not an interaction


def test_failed_spans_and_steps_fail_the_journey_with_their_kind(
    service: ServiceProcess, target: str
) -> None:
    status, created = service.api(
        "POST", "/clusters", cluster(target, group("broken", {"kind": "cs_journeys:Broken"}, 20))
    )
    assert status == 201
    view = service.wait_status(created["id"], timeout_s=60)
    assert view["status"] == "completed"
    _, results = service.api("GET", f"/clusters/{created['id']}/results")
    broken = results["groups"]["broken"]
    assert broken["requests"] == broken["failed"] == 20
    assert set(broken["errors"]) == {"client", "http_404"}
    assert broken["steps"]["boom"]["errors"] == {"client": broken["steps"]["boom"]["failed"]}
    assert broken["steps"]["missing"]["errors"] == {
        "http_404": broken["steps"]["missing"]["failed"]
    }
    rows = [
        json.loads(line)
        for line in service.request("GET", f"/clusters/{created['id']}/samples?format=jsonl")[
            1
        ].splitlines()
    ]
    boom = next(r for r in rows if r["name"] == "boom")
    assert boom["error_message"] == "ValueError: the retriever exploded"


def test_a_file_interaction_runs_from_its_path_and_submit_needs_no_inline_code_locally(
    service: ServiceProcess, target: str, tmp_path: Path
) -> None:
    (tmp_path / "journeys.py").write_text(JOURNEYS)
    config = cluster(target, group("file", {"kind": "file:journeys.py:Ask", "max_tokens": 5}, 6))
    config_file = tmp_path / "cluster.yaml"
    config_file.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [CLI, "submit", str(config_file), "--service", service.url, "--wait"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    _, clusters = service.api("GET", "/clusters")
    _, results = service.api("GET", f"/clusters/{clusters[0]['id']}/results")
    assert results["groups"]["file"]["steps"]["chat"]["output_tokens"] == 6 * 5


def test_inline_code_is_refused_unless_the_service_allows_it(tmp_path: Path, target: str) -> None:
    shipped = {
        "kind": "file:/nowhere/journeys.py:Ask",
        "source": JOURNEYS,
        "max_tokens": 3,
    }
    config = cluster(target, group("inline", shipped, 4))
    with ServiceProcess(tmp_path / "closed") as svc:
        status, body = svc.api("POST", "/clusters", config)
    assert status == 422
    (line,) = body["error"]["problems"]
    assert line.startswith("groups[0].interaction.source: this service does not run code sent")
    assert "--allow-inline-code" in line
    with ServiceProcess(tmp_path / "open", extra=("--allow-inline-code",)) as svc:
        results = run_to_end(svc, config)
    assert results["groups"]["inline"]["steps"]["chat"]["output_tokens"] == 4 * 3


@pytest.mark.parametrize(
    ("interaction", "expected"),
    [
        (
            {"kind": "no_such_module:Journey"},
            "groups[0].interaction.kind: no module named 'no_such_module' (is it installed, or "
            "on PYTHONPATH?)",
        ),
        (
            {"kind": "cs_journeys:Missing"},
            "groups[0].interaction.kind: module 'cs_journeys' has no 'Missing'; it has: Ask, "
            "Broken, ping",
        ),
        (
            {"kind": "cs_journeys:BaseModel"},
            "groups[0].interaction.kind: cs_journeys:BaseModel is a class BaseModel, not an "
            "Interaction subclass or an async function (async def name(ctx))",
        ),
        (
            {"kind": "cs_journeys:Ask", "max_tokens": "many", "questoin": "x"},
            "groups[0].interaction.questoin: unknown parameter (did you mean 'question'?); "
            "valid parameters: question, max_tokens\nerror: groups[0].interaction.max_tokens: "
            'expected an integer; got "many"',
        ),
        (
            {"kind": "cs_journeys:ping", "loud": True},
            "groups[0].interaction.loud: a function interaction takes no parameters",
        ),
        (
            {"kind": "file:broken.py:Journey"},
            "groups[0].interaction.kind: ",
        ),
    ],
)
def test_a_broken_plugin_fails_validation_with_what_is_wrong(
    tmp_path: Path, plugins: Path, target: str, interaction: dict[str, Any], expected: str
) -> None:
    (tmp_path / "broken.py").write_text("def journey(:\n    pass\n")
    config_file = tmp_path / "cluster.yaml"
    config_file.write_text(yaml.safe_dump(cluster(target, group("g", interaction))))
    done = subprocess.run(
        [CLI, "validate", str(config_file)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(plugins), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr + done.stdout
    if interaction["kind"].startswith("file:"):
        assert f"{tmp_path / 'broken.py'} failed to load: SyntaxError" in done.stderr + done.stdout
        assert "(line 1)" in done.stderr + done.stdout


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "custom"


@pytest.mark.parametrize(
    ("example", "journey", "steps"),
    [
        ("rag.yaml", "Rag", {"index", "embed", "retrieve", "answer"}),
        ("agent.yaml", "Agent", {"think", "tool"}),
    ],
)
def test_the_custom_examples_run_against_the_simulator(
    tmp_path: Path, example: str, journey: str, steps: set[str]
) -> None:
    done = subprocess.run(
        [CLI, "run", str(EXAMPLES / example), "--mock", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    (stats,) = summary["groups"].values()
    assert stats["requests"] == stats["succeeded"] > 5
    assert set(stats["steps"]) == steps
    llm = "answer" if journey == "Rag" else "think"
    assert stats["steps"][llm]["ttft_s"]["p50"] > 0 and stats["steps"][llm]["output_tokens"] > 0
    rows = pq.read_table(tmp_path / "samples.parquet").to_pylist()  # run's default format
    assert {r["name"] for r in rows if not r["step"]} == {journey}
    if journey == "Agent":  # the model called tools, then answered: more thoughts than runs
        assert stats["steps"]["tool"]["requests"] > 0
        assert stats["steps"]["think"]["requests"] > stats["requests"]


def test_clients_of_one_group_differ_by_vary(service: ServiceProcess, target: str) -> None:
    varied = group("varied", {"kind": "chat", "prompts": ["Hi"], "max_tokens": 99}, 16)
    varied["clients"] = 4
    varied["vary"] = {"max_tokens": [2, 3, 5, 7]}
    journeys = group("journeys", {"kind": "cs_journeys:Ask"}, 8)
    journeys["vary"] = {"max_tokens": {"min": 2, "max": 9}}
    status, created = service.api("POST", "/clusters", cluster(target, varied, journeys))
    assert status == 201, created
    assert service.wait_status(created["id"], timeout_s=60)["status"] == "completed"
    rows = [
        json.loads(line)
        for line in service.request("GET", f"/clusters/{created['id']}/samples?format=jsonl")[
            1
        ].splitlines()
    ]
    tokens = {(r["group"], r["client"], r["output_tokens"]) for r in rows if not r["step"]}
    assert {t for t in tokens if t[0] == "varied"} == {
        ("varied", 0, 2),
        ("varied", 1, 3),
        ("varied", 2, 5),
        ("varied", 3, 7),
    }
    per_client = {(client, n) for g, client, n in tokens if g == "journeys"}
    assert len(per_client) == 2 and all(2 <= n <= 9 for _, n in per_client)  # one value each
    _, clients = service.api("GET", f"/clusters/{created['id']}/clients")
    assert [c["vary"] for c in clients[:4]] == [{"max_tokens": n} for n in (2, 3, 5, 7)]
    assert {(c["id"], c["vary"]["max_tokens"]) for c in clients[4:]} == per_client


def test_a_varied_value_that_the_interaction_refuses_fails_validation(
    tmp_path: Path, plugins: Path, target: str
) -> None:
    journeys = group("journeys", {"kind": "cs_journeys:Ask"})
    journeys["vary"] = {"max_tokens": [4, "lots"]}
    config_file = tmp_path / "cluster.yaml"
    config_file.write_text(yaml.safe_dump(cluster(target, journeys)))
    done = subprocess.run(
        [CLI, "validate", str(config_file)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(plugins), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        "groups[0].vary (client 1: {'max_tokens': 'lots'}): max_tokens: expected an integer"
        in done.stderr
    ), done.stderr


def test_conversations_carry_their_history_from_turn_to_turn(
    service: ServiceProcess, target: str, tmp_path: Path
) -> None:
    synthetic = group(
        "synthetic",
        {"kind": "conversation", "turns": 3, "max_tokens": 10, "synthetic": {"input_tokens": 20}},
        6,
    )
    dialogues = tmp_path / "dialogues.jsonl"
    dialogue = [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "Tell me about Slurm arrays please"},
    ]
    dialogues.write_text(json.dumps({"messages": dialogue}) + "\n")
    from_data = group(
        "dataset",
        {"kind": "conversation", "turns": 5, "max_tokens": 4, "dataset": {"path": str(dialogues)}},
        4,
    )
    sharegpt = tmp_path / "sharegpt.json"
    conversation = [
        {"from": "human", "value": "one two three"},
        {"from": "gpt", "value": "a b"},
        {"from": "human", "value": "four five"},
        {"from": "gpt", "value": "c"},
        {"from": "human", "value": "six"},
    ]
    sharegpt.write_text(json.dumps([{"id": "x", "conversations": conversation}]))
    shared = group(
        "sharegpt",
        {"kind": "conversation", "turns": 2, "max_tokens": 3, "dataset": {"path": str(sharegpt)}},
        4,
    )
    results = run_to_end(service, cluster(target, synthetic, from_data, shared))
    talk = results["groups"]["synthetic"]
    assert talk["requests"] == talk["succeeded"] == 6  # conversations
    assert list(talk["steps"]) == ["turn-1", "turn-2", "turn-3"]
    turns = [talk["steps"][f"turn-{n}"] for n in (1, 2, 3)]
    # A turn that finished before the run stopped counts, even if its conversation did not.
    assert all(turn["requests"] >= 6 for turn in turns)
    assert all(turn["output_tokens"] == 10 * turn["requests"] for turn in turns)
    inputs = [turn["input_tokens"] / turn["requests"] for turn in turns]
    # Each turn sends the history: the previous turns' prompts and the 10-token answers.
    assert inputs[0] < inputs[1] < inputs[2]
    assert inputs[1] >= 2 * inputs[0] + 10 and inputs[2] >= 3 * inputs[0] + 20
    data = results["groups"]["dataset"]
    assert list(data["steps"]) == ["turn-1", "turn-2"]  # the entry's own two user turns
    first, second = data["steps"]["turn-1"], data["steps"]["turn-2"]
    assert first["input_tokens"] == 2 * first["requests"]  # "Hello there"
    assert second["input_tokens"] == (2 + 4 + 6) * second["requests"]  # and the 4-token reply
    shared_steps = results["groups"]["sharegpt"]["steps"]
    assert list(shared_steps) == ["turn-1", "turn-2"]  # its human turns, up to turns: 2
    first, second = shared_steps["turn-1"], shared_steps["turn-2"]
    assert first["output_tokens"] == 2 * first["requests"]  # the dataset's answer length
    assert second["input_tokens"] == (3 + 2 + 2) * second["requests"]  # "four five" after it


def test_the_summary_says_whether_token_lengths_are_exact(
    service: ServiceProcess, target: str, tmp_path: Path
) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from clientswarm.interactions.tokenizer import WORDS

    # A whitespace word-level tokenizer: its tokens are the simulator's words, so the lengths
    # the target reports are the lengths asked for.
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.train_from_iterator(
        [" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    )
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    synthetic = {"input_tokens": {"kind": "uniform", "min": 5, "max": 40}, "count": 50}
    exact = group(
        "exact",
        {
            "kind": "completion",
            "max_tokens": 2,
            "synthetic": synthetic,
            "tokenizer": str(tmp_path / "tokenizer.json"),
        },
    )
    approximate = group("approximate", {"kind": "chat", "max_tokens": 2})
    results = run_to_end(service, cluster(target, exact, approximate))
    assert results["groups"]["exact"]["input_token_lengths"] == "exact"
    assert results["groups"]["approximate"]["input_token_lengths"] == "approximate"
    assert results["notes"] == [
        f"exact: input token lengths are exact (tokenizer {tmp_path / 'tokenizer.json'})",
        "approximate: input token lengths are approximate (1 token = 1 word; set tokenizer: "
        "for exact lengths)",
    ]
    rows = [
        json.loads(line)
        for line in service.request("GET", f"/clusters/{_last_id(service)}/samples?format=jsonl")[
            1
        ].splitlines()
    ]
    lengths = {r["input_tokens"] for r in rows if r["group"] == "exact"}
    assert lengths <= set(range(5, 41)) and len(lengths) > 3  # the drawn lengths, as served
