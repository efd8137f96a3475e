"""Hostile input to a real service: a clear 4xx at once, never a 500, a stall or an id oracle."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service_process import CLI, ServiceProcess, simulator

pytestmark = [pytest.mark.timeout(120)]

TOKEN = "bounds-token"
BOMB = "".join(  # the billion laughs: 9**9 strings in under 500 bytes
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    """A service with a token, and the id of one cluster of it (run against the simulator)."""
    with simulator() as target, ServiceProcess(tmp_path_factory.mktemp("svc"), token=TOKEN) as svc:
        config = {
            "name": "bounds",
            "target": {"url": target},
            "groups": [{"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 3}}],
        }
        status, body = svc.api("POST", "/clusters", config)
        assert status == 201, body
        yield svc, body["id"]
        svc.wait_status(body["id"])


def test_internal_routes_answer_alike_for_unknown_and_existing_clusters(
    service: tuple[ServiceProcess, str],
) -> None:
    svc, cluster_id = service
    answers = []
    for known in (cluster_id, "0123456789ab"):  # with the API's token, not the cluster's
        path = f"/clusters/{known}/workers/0/assignment"
        status, body = svc.api("GET", path, prefix="/internal/v1")
        answers.append((status, body["error"]["message"].replace(known, "ID")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/clusters/{id}/clients/99999999999999999999", "path client_id"),
        ("/clusters/{id}/events?after=99999999999999999999", "query after"),
        ("/clusters/{id}/clients/-1", "path client_id"),
        ("/clusters/%00/results", "path cluster_id"),
    ],
)
def test_parameters_out_of_bounds_are_a_422_naming_them(
    service: tuple[ServiceProcess, str], path: str, where: str
) -> None:
    svc, cluster_id = service
    status, body = svc.api("GET", path.format(id=cluster_id))
    assert status == 422, body
    assert body["error"]["problems"][0].startswith(where)


@pytest.mark.parametrize(
    ("text", "media", "says"),
    [
        (BOMB, "application/yaml", "aliases repeat more than"),
        ("[" * 100_000 + "]" * 100_000, "application/json", "nest more than 64 levels"),
        ("a:\n  - " + "[" * 100_000, "application/yaml", "nest more than 64 levels"),
        ('{"name": "x", "seed": ' + "7" * 5000 + "}", "application/json", "out of range"),
    ],
)
def test_hostile_configurations_are_a_422_in_milliseconds(
    service: tuple[ServiceProcess, str], text: str, media: str, says: str
) -> None:
    svc, _ = service
    started = time.monotonic()
    status, body = svc.api("POST", "/validate", text, content_type=media)
    assert time.monotonic() - started < 2.0
    assert status == 422, body
    assert says in body["error"]["message"]


def test_an_unsupported_method_names_every_method_of_the_path(
    service: tuple[ServiceProcess, str],
) -> None:
    svc, cluster_id = service
    for path, allowed in (("/clusters", "GET, POST"), (f"/clusters/{cluster_id}", "DELETE, GET")):
        status, raw, headers = svc.request("PUT", path)
        assert (status, headers["allow"]) == (405, allowed), raw


def test_a_blank_api_token_variable_is_refused_and_a_padded_one_stripped(tmp_path: Path) -> None:
    args = [CLI, "serve", "--port", "0", "--data-dir", str(tmp_path / "blank")]
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "CLIENTSWARM_API_TOKEN": " \t"},
    )
    assert done.returncode == 2, done.stderr
    assert "CLIENTSWARM_API_TOKEN is set but blank" in done.stderr
    assert "Traceback" not in done.stderr
    env = {"CLIENTSWARM_API_TOKEN": f"  {TOKEN}\n"}
    with ServiceProcess(tmp_path / "padded", env=env) as svc:
        assert svc.request("GET", "/clusters", token=TOKEN)[0] == 200
        assert svc.request("GET", "/clusters", token="wrong")[0] == 403
