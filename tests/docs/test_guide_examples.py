"""The guides (docs/guides/*.md) cannot drift from the configuration models or the CLI.

Configuration snippets. Every fenced ``yaml`` (or ``yml``) code block of a guide whose top-level
value is a mapping made only of configuration keys (``name``, ``seed``, ``target``, ``spawner``,
``warmup_s``, ``slo``, ``outputs``, ``groups``, ``thresholds``, ``abort``, ``telemetry``) is a
clientswarm configuration:

- with ``name``, ``target`` and ``groups`` it is a whole configuration file;
- otherwise it is a fragment (e.g. only ``spawner:``, or only ``groups:``), laid over a minimal
  configuration (:data:`BASE_CONFIG`) key by key, and the result is validated.

Either way it is validated as ``clientswarm validate`` does: the real loader, then every group's
interaction is built (datasets read, ``file:`` interactions imported, synthetic prompts made),
as if the configuration file sat in ``docs/guides/examples/`` — the example data files the
guides name live there. A ``tokenizer.json`` is trained on the fly next to them (with the
optional ``tokenizers`` package; without it, snippets that name a tokenizer are skipped).
Blocks with any other top-level key (Prometheus, Kubernetes manifests, summary.json) are not
configurations. A block whose first line is ``# not-a-config`` is skipped on purpose.

Command lines. In every code block and every inline code span of a guide, a command that starts
with ``clientswarm`` (or ``…/clientswarm``, after optional ``VAR=value`` assignments) names an
existing subcommand, and each ``-o``/``--option`` written after it is an option of that
subcommand (the click command tree of ``clientswarm.cli.main``, including its lazily imported
commands). Quoted arguments (``--mock-args '--ttft-ms 50'``) are values, not options.

Both checkers are tested on deliberately wrong input, so a broken checker cannot pass silently.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import markdown_blocks
import pytest
import yaml
from markdown_blocks import FENCE, Block

from clientswarm.cli import main
from clientswarm.config.loader import validate_config_data
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions.registry import build_group_interactions
from clientswarm.interactions.tokenizer import WORDS

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs" / "guides"
EXAMPLES = GUIDES / "examples"

CONFIG_KEYS = frozenset(
    {"name", "seed", "target", "spawner", "warmup_s", "slo", "outputs", "groups"}
    | {"thresholds", "abort", "telemetry"}
)
WHOLE_KEYS = frozenset({"name", "target", "groups"})
SKIP_MARKER = "# not-a-config"

BASE_CONFIG: dict[str, Any] = {
    "name": "guide-fragment",
    "target": {"url": "http://127.0.0.1:8000", "model": "mock-model"},
    "groups": [
        {
            "name": "chat",
            "clients": 1,
            "interaction": {"kind": "chat", "prompts": ["Hello"]},
            "stop": {"duration_s": 1},
        }
    ],
}
"""What a fragment is laid over: each top-level key of the fragment replaces this one's."""

_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_SEPARATORS = re.compile(r"\s*(?:&&|\|\||;|\||&|\$\(|\))\s*")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPTION = re.compile(r"^(--?[A-Za-z][A-Za-z0-9-]*)(=.*)?$")


def code_blocks(page: Path) -> Iterator[Block]:
    """The fenced code blocks of a guide page (also inside admonitions and tabs), dedented."""
    return markdown_blocks.code_blocks(page.read_text(encoding="utf-8"), page.name)


def prose_without_blocks(page: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of ``page`` outside fenced code blocks."""
    inside: str | None = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if match is not None:
            if inside is None:
                inside = match["fence"]
                continue
            if line.strip().strip(inside[0]) == "" and line.strip().startswith(inside):
                inside = None
                continue
        if inside is None:
            yield number, line


def pages() -> list[Path]:
    """Every guide page."""
    return sorted(GUIDES.glob("*.md"))


# -- configuration snippets -----------------------------------------------------------------------


def config_data(block: Block) -> dict[str, Any] | None:
    """The configuration a YAML block stands for (fragments laid over BASE_CONFIG), else None."""
    if block.lang not in ("yaml", "yml") or block.text.lstrip().startswith(SKIP_MARKER):
        return None
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError:
        return None  # not for us to judge; test_yaml_blocks_parse reports it
    if not isinstance(data, dict) or not data or not set(data) <= CONFIG_KEYS:
        return None
    if set(data) >= WHOLE_KEYS:
        return data
    return {**BASE_CONFIG, **data}


def config_problems(data: dict[str, Any], base_dir: Path) -> list[str]:
    """What ``clientswarm validate`` would say about ``data`` in ``base_dir`` (empty: valid)."""
    try:
        config = validate_config_data(data, source="snippet")
        build_group_interactions(config, files=FileScope.anywhere(base_dir))
    except ConfigError as exc:
        return list(exc.problems)
    return []


def config_blocks() -> list[Block]:
    """Every YAML block of the guides that is a configuration or a fragment of one."""
    return [b for page in pages() for b in code_blocks(page) if config_data(b) is not None]


def train_tokenizer(path: Path) -> bool:
    """Write a small byte-level BPE tokenizer.json to ``path``; False without ``tokenizers``."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        return False
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["[UNK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([" ".join(WORDS)] * 4, trainer)
    tok.save(str(path))
    return True


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of docs/guides/examples with a tokenizer.json (when tokenizers is installed)."""
    target = tmp_path_factory.mktemp("guide-examples") / "examples"
    shutil.copytree(EXAMPLES, target)
    train_tokenizer(target / "tokenizer.json")
    return target


@pytest.mark.parametrize("block", config_blocks(), ids=lambda b: b.id)
def test_config_snippet_is_valid(block: Block, example_dir: Path) -> None:
    data = config_data(block)
    assert data is not None
    if "tokenizer" in block.text and not (example_dir / "tokenizer.json").exists():
        pytest.skip("the optional tokenizers package is not installed")
    problems = config_problems(data, example_dir)
    assert not problems, f"{block.id}: not a valid configuration:\n" + "\n".join(problems)


def test_guides_have_config_snippets() -> None:
    """The marker rule finds the guides' configurations (a rule that finds none tests none)."""
    found = {b.page for b in config_blocks()}
    assert {"quickstart.md", "vllm.md", "slurm.md", "kubernetes.md"} <= found


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_yaml_blocks_parse(page: Path) -> None:
    for block in code_blocks(page):
        if block.lang in ("yaml", "yml"):
            try:
                list(yaml.safe_load_all(block.text))
            except yaml.YAMLError as exc:
                pytest.fail(f"{block.id}: invalid YAML: {exc}")


def test_config_checker_rejects_a_bad_snippet(tmp_path: Path) -> None:
    typo = Block("self-test", 1, "yaml", "spawner: {kind: slurm, partiton: debug}\n")
    data = config_data(typo)
    assert data is not None and data["name"] == BASE_CONFIG["name"]
    assert any("partiton" in p for p in config_problems(data, tmp_path))
    missing = Block(
        "self-test",
        1,
        "yaml",
        "name: x\ntarget: {url: 'http://h:8000'}\ngroups:\n  - name: g\n"
        "    interaction: {kind: chat, dataset: {path: no-such-file.jsonl}}\n"
        "    stop: {requests: 1}\n",
    )
    data = config_data(missing)
    assert data is not None and data["name"] == "x"
    assert config_problems(data, tmp_path), "a missing dataset must be a problem"
    assert config_data(Block("p", 1, "yaml", "scrape_configs: []\n")) is None
    assert config_data(Block("p", 1, "yaml", f"{SKIP_MARKER}\nspawner: {{kind: x}}\n")) is None


def test_code_block_parser_dedents_nested_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('=== "Tab"\n\n    ```yaml\n    spawner: {kind: local}\n    ```\n\nText\n')
    (block,) = code_blocks(page)
    assert block.lang == "yaml" and block.text == "spawner: {kind: local}\n"
    assert [line for _, line in prose_without_blocks(page)] == ['=== "Tab"', "", "", "Text"]


# -- command lines --------------------------------------------------------------------------------


def command_tree() -> dict[str, set[str]]:
    """Each subcommand of ``clientswarm`` → its option strings (``""``: the main group's)."""
    # Contexts made as click makes them, with each command's context_settings: click caches a
    # command's help option on first use, so a bare Context would change later --help output.
    ctx = click.Context(main, **main.context_settings)
    tree: dict[str, set[str]] = {"": _options_of(main, ctx)}
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None, name
        sub = click.Context(command, parent=ctx, **command.context_settings)
        tree[name] = _options_of(command, sub)
    return tree


def _options_of(command: click.Command, ctx: click.Context) -> set[str]:
    options = {"-h", "--help"}
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            options.update(param.opts)
            options.update(param.secondary_opts)
    return options


def _segments(text: str) -> Iterator[str]:
    """Shell commands of one (joined) line: split at ``&&``, ``|``, ``;``, ``&``, ``$(``."""
    text = text.split(" #", 1)[0]  # a trailing comment
    yield from (part for part in _SEPARATORS.split(text) if part.strip())


def clientswarm_calls(text: str) -> Iterator[list[str]]:
    """The argument lists after ``clientswarm`` of every command in ``text`` that runs it."""
    for segment in _segments(text):
        try:
            words = shlex.split(segment.replace("[", " ").replace("]", " "))
        except ValueError:
            words = segment.split()
        while words and (_ASSIGNMENT.match(words[0]) or words[0] == "$"):
            words = words[1:]
        if words and (words[0] == "clientswarm" or words[0].endswith("/clientswarm")):
            yield words[1:]


def call_problems(args: list[str], tree: dict[str, set[str]]) -> list[str]:
    """What is wrong with ``clientswarm ARGS`` (empty: every command and option exists)."""
    shown = "clientswarm " + " ".join(args)
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0).split("=", 1)[0]
        if option not in tree[""]:
            return [f"{shown!r}: clientswarm has no option {option}"]
    if not rest:
        return []
    command = rest.pop(0)
    if command not in tree:
        valid = ", ".join(sorted(name for name in tree if name))
        return [f"{shown!r}: no command {command!r}; the commands are {valid}"]
    problems = []
    for word in rest:
        match = _OPTION.match(word)
        if match is not None and match[1] not in tree[command]:
            problems.append(f"{shown!r}: `clientswarm {command}` has no option {match[1]}")
    return problems


def command_lines(page: Path) -> Iterator[tuple[str, str]]:
    """``(where, text)`` of every code block line (continuations joined) and inline code span."""
    for block in code_blocks(page):
        if block.lang in ("yaml", "yml", "json", "python", "py", "promql", "toml", "ini"):
            continue
        joined = block.text.replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            yield f"{block.id}+{offset}", line.removeprefix("$ ")
    for number, line in prose_without_blocks(page):
        for span in _INLINE.findall(line):
            yield f"{page.name}:{number}", span


@pytest.fixture(scope="module")
def tree() -> dict[str, set[str]]:
    return command_tree()


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_commands_and_options_exist(page: Path, tree: dict[str, set[str]]) -> None:
    problems = [
        f"{where}: {problem}"
        for where, text in command_lines(page)
        for args in clientswarm_calls(text)
        for problem in call_problems(args, tree)
    ]
    assert not problems, "\n".join(problems)


def test_guides_use_the_cli() -> None:
    """The checker sees the guides' command lines (a checker that sees none checks none)."""
    calls = [
        args for page in pages() for _, t in command_lines(page) for args in clientswarm_calls(t)
    ]
    assert {"run", "serve", "submit", "validate", "calibrate"} <= {a[0] for a in calls if a}


def test_command_checker_rejects_wrong_commands(tree: dict[str, set[str]]) -> None:
    def problems(text: str) -> list[str]:
        return [p for args in clientswarm_calls(text) for p in call_problems(args, tree)]

    assert problems("clientswarm run cluster.yaml --no-such-option")
    assert problems(".venv/bin/clientswarm servr --port 8080")
    assert problems("cd x && CLIENTSWARM_SERVICE=http://h:8080 clientswarm submit f.yaml --wiat")
    assert problems("clientswarm --no-such-flag run f.yaml")
    assert not problems("clientswarm run f.yaml --mock --mock-args '--ttft-ms 50' -o out")
    assert not problems("clientswarm stop ID [--group G | --client N]")
    assert not problems("kubectl -n clientswarm port-forward svc/clientswarm 8080 &")
    assert not problems("clientswarm serve --host 0.0.0.0 --port=8080 & # --not-checked")
    assert not problems("clientswarm results ID --json | jq .total --raw-output")
    assert "serve" in tree and "--token-file" in tree["serve"]
