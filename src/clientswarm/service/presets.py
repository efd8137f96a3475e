"""Spawner presets: the operator's spawner options that posted configurations name but never write.

``clientswarm serve --spawner-preset gpu=/etc/clientswarm/gpu.yaml`` reads a YAML mapping of
spawner options (``kind`` and any of its options: Slurm ``setup`` lines and ``extra_sbatch``,
a Kubernetes ``image``, ``env`` with Secret references, …). A posted configuration says
``spawner: {kind: slurm, preset: gpu, workers: 8}``: the options it gives override the
preset's, except the ones that run code or reach credentials
(``OPERATOR_ONLY`` of each spawner model), which on a shared service only a preset may set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from clientswarm.config.errors import validation_problems
from clientswarm.config.models import SpawnerConfig
from clientswarm.errors import ClientswarmError

_SPAWNER = TypeAdapter(SpawnerConfig)


class PresetError(ClientswarmError, ValueError):
    """A preset file that cannot be used (the message is one line)."""


def load_preset(name: str, path: Path) -> dict[str, Any]:
    """The options of preset ``name`` from the YAML file ``path``, validated as a spawner."""
    where = f"--spawner-preset {name}={path}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise PresetError(f"{where}: cannot read the file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[:1] or ["syntax error"]
        raise PresetError(f"{where}: invalid YAML: {first[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise PresetError(f"{where}: expected a mapping of spawner options with a kind")
    if "preset" in data:
        raise PresetError(f"{where}: a preset cannot name another preset")
    if "workers" in data:
        raise PresetError(f"{where}: workers is each configuration's choice, not a preset's")
    _, problems = validate_options(data)
    if problems:
        raise PresetError(f"{where}: {'; '.join(problems)}")
    return data


def parse_preset_option(value: str) -> tuple[str, Path]:
    """``NAME=FILE`` of ``--spawner-preset``."""
    name, sep, file = value.partition("=")
    if not sep or not name or not file:
        raise PresetError(f"--spawner-preset {value!r}: expected NAME=FILE")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise PresetError(f"--spawner-preset {value!r}: the name takes letters, digits, '-_.'")
    return name, Path(file)


def merged_options(posted: Mapping[str, Any], preset: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's options overridden by those a configuration gave (``posted``: only the
    options it set), without the preset's name."""
    merged = {**preset, **{k: v for k, v in posted.items() if k != "preset"}}
    return merged


def validate_options(options: Mapping[str, Any]) -> tuple[SpawnerConfig | None, list[str]]:
    """The spawner model of merged options, or the problems (each under ``spawner.``)."""
    try:
        return _SPAWNER.validate_python(dict(options)), []
    except ValidationError as exc:
        return None, [
            _under_spawner(line, str(options.get("kind"))) for line in validation_problems(exc)
        ]


def _under_spawner(line: str, kind: str) -> str:
    """``slurm.setup: …`` (the union's tag first) as ``spawner.setup: …``."""
    for tag in (f"{kind}.", f"{kind}: "):
        if line.startswith(tag):
            rest = line[len(tag) :]
            return f"spawner.{rest}" if tag.endswith(".") else f"spawner: {rest}"
    return f"spawner.{line}"


__all__ = [
    "PresetError",
    "load_preset",
    "merged_options",
    "parse_preset_option",
    "validate_options",
]
