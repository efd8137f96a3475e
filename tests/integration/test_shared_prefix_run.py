"""Shared-prefix prompts on the wire: what a real server receives from chat, completion and
conversation clients, and a whole ``clientswarm run --mock``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from scripted_server import Script, ScriptedServer, chat_stream, completion_chunk, sse, usage_chunk

from clientswarm.clock import Clock
from clientswarm.config.interactions import (
    ChatInteraction,
    CompletionInteraction,
    ConversationInteraction,
)
from clientswarm.config.models import TargetConfig
from clientswarm.interactions import build_interaction
from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.interactions.http1 import Http1Client
from clientswarm.interactions.prompts import build_prompt_source
from clientswarm.load.think import client_rng
from clientswarm.metrics.sample import Sample

CLI = str(Path(sys.executable).parent / "clientswarm")
SHARED = {"groups": 3, "prompts_per_group": 4, "prefix_tokens": 30, "question_tokens": 5}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    scripted.script("/v1/chat/completions", Script(chat_stream([" a", " b"], first_delay_s=0)))
    done = [completion_chunk(" a"), completion_chunk(" b", finish="length")]
    scripted.script(
        "/v1/completions", Script([(0.0, c) for c in [*done, usage_chunk(35, 2), sse("[DONE]")]])
    )
    yield scripted
    await scripted.close()


async def send(
    server: ScriptedServer, interaction: Interaction, clients: int, each: int
) -> list[Sample]:
    """``each`` runs of ``interaction`` by each of ``clients`` clients, as a worker gives them."""
    samples: list[Sample] = []
    clock = Clock()
    target = TargetConfig.model_validate({"url": server.url, "model": "mock-model"})
    async with aiohttp.ClientSession() as session:
        http1 = Http1Client(clock.now_ns)
        for client in range(clients):
            ctx = ClientContext(
                session=session,
                target=target,
                headers={},
                group="g",
                client=client,
                worker=0,
                rng=client_rng(7, client),
                clock=clock,
                emit=samples.append,
                http1=http1,
            )
            for _ in range(each):
                await interaction.perform(ctx, clock.now_ns())
        http1.close()
    return samples


def prefixes(config: Any) -> list[str]:
    prompts = build_prompt_source(config, seed=7).prompts
    return list(dict.fromkeys(str(p.prefix) for p in prompts))


def group_of(text: str, known: list[str]) -> int:
    found = [i for i, prefix in enumerate(known) if text.startswith(prefix + " ")]
    assert len(found) == 1, text[:80]
    return found[0]


async def test_chat_clients_send_their_groups_prefixes(server: ScriptedServer) -> None:
    config = ChatInteraction.model_validate({"shared_prefix": SHARED, "system_prompt": "Be brief."})
    samples = await send(server, build_interaction(config, seed=7), clients=4, each=12)
    assert len(samples) == 48 and all(s.ok for s in samples), samples[0].error_message
    known = prefixes(config)
    by_client: dict[int, list[int]] = {}
    for index, request in enumerate(server.requests):
        system, user = request.body["messages"]
        assert system == {"role": "system", "content": "Be brief."}
        by_client.setdefault(index // 12, []).append(group_of(user["content"], known))
    assert all(
        len(set(groups)) >= 2 for groups in by_client.values()
    )  # clients move between groups
    assert {g for groups in by_client.values() for g in groups} == {0, 1, 2}
    assert len({tuple(groups) for groups in by_client.values()}) == 4  # each in its own order


async def test_completion_prompts_start_with_the_prefix(server: ScriptedServer) -> None:
    config = CompletionInteraction.model_validate({"shared_prefix": SHARED | {"output_tokens": 2}})
    samples = await send(server, build_interaction(config, seed=7), clients=2, each=10)
    assert all(s.ok for s in samples)
    known = prefixes(config)
    for request in server.requests:
        group_of(request.body["prompt"], known)
        assert len(request.body["prompt"].split()) == 35
        assert request.body["max_tokens"] == 2


async def test_a_conversation_keeps_its_groups_prefix_in_front(server: ScriptedServer) -> None:
    config = ConversationInteraction.model_validate(
        {"shared_prefix": SHARED, "turns": 3, "max_tokens": 2}
    )
    await send(server, build_interaction(config, seed=7), clients=3, each=2)
    known = prefixes(config)
    requests = [r.body["messages"] for r in server.requests]
    assert [len(m) for m in requests] == [1, 3, 5] * 6
    for number in range(6):  # conversations: turn k has the first message, then its own turns
        turns = requests[3 * number : 3 * number + 3]
        first = turns[0][0]["content"]
        group_of(first, known)
        assert turns[2][:3] == turns[1] and turns[1][0] == turns[0][0]
        assert turns[1][1] == turns[2][1] == {"role": "assistant", "content": " a b"}
        for later in (turns[1][2], turns[2][4]):
            assert later["role"] == "user" and len(later["content"].split()) == 5
            assert not any(later["content"].startswith(p) for p in known)  # the question only


def test_a_mock_run_sends_prefix_and_question_tokens(tmp_path: Path) -> None:
    config = tmp_path / "prefix.yaml"
    config.write_text(
        "name: prefix-cache\n"
        "seed: 5\n"
        "target: {url: 'http://127.0.0.1:1', model: mock-model}\n"
        "spawner: {kind: local, workers: 2}\n"
        "groups:\n"
        "  - name: chat\n"
        "    clients: 4\n"
        "    interaction:\n"
        "      kind: chat\n"
        "      shared_prefix: {groups: 3, prompts_per_group: 4, prefix_tokens: 64,"
        " question_tokens: 8, output_tokens: 4}\n"
        "      extra_body: {ignore_eos: true}\n"
        "    stop: {duration_s: 1}\n"
        "  - name: talk\n"
        "    clients: 2\n"
        "    interaction:\n"
        "      kind: conversation\n"
        "      turns: 2\n"
        "      max_tokens: 3\n"
        "      shared_prefix: {groups: 2, prompts_per_group: 2, prefix_tokens: 32,"
        " question_tokens: 4}\n"
        "    stop: {duration_s: 1}\n"
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *(CLI, "run", str(config), "-o", str(out), "--samples-format", "jsonl"),
            *("--mock", "--mock-args", "--ttft-ms 5 --itl-ms 1"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    chat = [s for s in samples if s["group"] == "chat"]
    assert len(chat) > 20 and all(s["status"] == "ok" for s in chat)
    # The simulator counts the words it received: the group's prefix and the question.
    assert {(s["input_tokens"], s["output_tokens"], s["token_source"]) for s in chat} == {
        (72, 4, "usage")
    }
    turns = [s for s in samples if s["group"] == "talk" and s["name"].startswith("turn-")]
    first = {s["input_tokens"] for s in turns if s["name"] == "turn-1"}
    second = {s["input_tokens"] for s in turns if s["name"] == "turn-2"}
    assert first == {36} and second == {36 + 3 + 4}
