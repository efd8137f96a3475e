"""Turn pydantic validation errors into one readable line per problem.

A line reads ``<field path>: <what is wrong>; got <bad value> (<hint>); <what is valid>``, e.g.::

    groups[0].interaction.stremm: unknown field 'stremm' (did you mean 'stream'?); valid fields ...
    groups[0].load.kind: unknown kind; got "opne" (did you mean 'open'?); valid kinds: closed, open

To name the valid fields and kinds, the error's ``loc`` is walked through the model classes.
Pydantic puts the tag of a discriminated union into ``loc`` (``groups, 0, interaction, chat,
max_tokens``); the walk uses it to pick the member model and leaves it out of the displayed path.
Values that may be secrets (API keys, auth headers, URL passwords) are never shown.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from clientswarm.config.models import NAME_PATTERN, ClusterConfig

MAX_SHOWN_CHARS = 60
HIDDEN = "<hidden>"

_NOT_GIVEN: Any = object()
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "auth", "cookie"}
_SECRET_WORDS |= {"authorization", "credential", "credentials", "bearer"}
_SECRET_VALUE = re.compile(r"^(bearer\s|(sk|pk|hf|ghp|gho|ghs|glpat|xox[abp])[-_][\w-]{6,})", re.I)
_URL_PASSWORD = re.compile(r"(\w+://[^/@\s:]+):[^/@\s]+@")
_ENV_REFERENCE = re.compile(r"\$\{?[A-Za-z_]\w*\}?")
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w-]*$")

_TYPE_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_parsing_size": "expected an integer of reasonable size",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "string_sub_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "set_type": "expected a list",
    "none_required": "expected null",
}
_MAPPING_TYPES = {"dict_type", "model_type", "model_attributes_type", "dataclass_type"}


def validation_problems(exc: ValidationError, *, model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem of ``exc``; ``model`` is the validated class (ClusterConfig if None)."""
    root = model or ClusterConfig
    walk_root = root if exc.title == root.__name__ else None
    return [describe_error(err, walk_root) for err in exc.errors(include_url=False)]


def describe_error(err: ErrorDetails, root: type[BaseModel] | None) -> str:
    """One line for one pydantic error; ``root`` is the model its ``loc`` starts from."""
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input", _NOT_GIVEN)
    where = _walk(root, loc)
    secret = _is_secret_loc(loc)

    def line(what: str, got: Any = _NOT_GIVEN, hint: str | None = None, valid: str = "") -> str:
        return _line(where.path, what, got=got, hint=hint, valid=valid, secret=secret)

    if kind == "missing":
        return line("required field missing", hint=_description(where), valid=_valid_kinds(where))
    if kind == "extra_forbidden":
        return _unknown_field(where, str(loc[-1]))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _bad_kind(where, kind, value, ctx, secret)
    if kind == "literal_error":
        return _bad_literal(where, loc, value, ctx, secret)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        too = "too small" if kind.startswith("greater") else "too large"
        return line(too, value, valid="must be " + _bounds(where, ctx))
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == NAME_PATTERN:
            allowed = "use letters, digits, '_', '.' and '-', starting with a letter or digit"
            return line("not a valid name", value, valid=allowed)
        return line(
            "does not match the expected pattern", value, valid=f"pattern: {ctx['pattern']}"
        )
    if kind in ("string_too_long", "string_too_short"):
        length = f"{len(value)} characters" if isinstance(value, str) else None
        if kind == "string_too_long":
            return line("too long", value, length, valid=f"at most {ctx['max_length']} characters")
        return line("too short", value, valid=f"at least {ctx['min_length']} characters")
    if kind in ("too_short", "too_long"):
        return _bad_length(where, kind, value, ctx, secret)
    if kind == "invalid_key":  # a mapping key that is not a string, e.g. ``1: x`` in YAML
        parent = _walk(root, loc[:-1])
        in_model = any(_is_model(m) for m in _members(parent.type_, []))
        what = "field names must be strings" if in_model else "keys must be strings"
        return _line(parent.path, what, got=value, hint=_quote_hint(value), secret=secret)
    if loc[-1:] == ("[key]",):
        return line("keys must be strings", value, hint=_quote_hint(value))
    if kind in _MAPPING_TYPES:
        return _not_a_mapping(where, value, secret)
    if kind in _TYPE_EXPECTED:
        hint = _quote_hint(value) if kind.startswith("string") else None
        return line(_TYPE_EXPECTED[kind], value, hint=hint)
    if kind in ("value_error", "assertion_error"):
        message = str(ctx["error"]) if "error" in ctx else err["msg"].partition(", ")[2]
        # A model-level check gets the whole mapping as input: showing it helps nobody.
        got = _NOT_GIVEN if isinstance(value, dict | list) else value
        return line(message, got, hint=None if secret else _env_hint(value))
    msg = err["msg"]
    return line(msg[:1].lower() + msg[1:], value, hint=_env_hint(value))


# -- the walk along ``loc`` ---------------------------------------------------------------------


@dataclass
class _Where:
    """What the walk along an error's ``loc`` found."""

    path: str = ""
    model: type[BaseModel] | None = None  # model in which the last loc item was looked up
    tag: str | None = None  # kind that selected ``model`` out of a union
    siblings: tuple[type[BaseModel], ...] = ()  # all members of that union
    field_info: FieldInfo | None = None  # the field the last loc item names
    type_: Any = None  # type expected at the end of loc; None when the walk got lost
    metadata: list[Any] = field(default_factory=list)  # constraints of that field


def _walk(root: type[BaseModel] | None, loc: Sequence[int | str]) -> _Where:
    where = _Where(type_=root)
    parts: list[str] = []
    tag: str | None = None
    siblings: tuple[type[BaseModel], ...] = ()
    for item in loc:
        if item == "[key]":
            continue
        members = _members(where.type_, where.metadata)
        models = [m for m in members if _is_model(m)]
        if isinstance(item, str) and len(models) > 1:
            chosen = _by_tag(models).get(item)
            if chosen is not None:
                where.type_, tag, siblings = chosen, item, tuple(models)
                continue
        parts.append(_path_part(item, first=not parts, dict_key=_is_dict(members)))
        where.model, where.tag, where.siblings, where.field_info = None, None, (), None
        if len(members) != 1:
            where.type_ = None
            continue
        only = members[0]
        if _is_model(only) and isinstance(item, str):
            where.model, where.tag, where.siblings = only, tag, siblings
            where.field_info = only.model_fields.get(item)
            where.type_ = where.field_info.annotation if where.field_info else None
            where.metadata = list(where.field_info.metadata) if where.field_info else []
        elif get_origin(only) in (list, tuple, set) and isinstance(item, int):
            where.type_, where.metadata = (get_args(only) or (Any,))[0], []
        elif get_origin(only) is dict:
            where.type_, where.metadata = (get_args(only) or (Any, Any))[-1], []
        else:
            where.type_ = None
        tag, siblings = None, ()
    _members(where.type_, where.metadata)  # collects Annotated metadata under an Optional
    where.path = "".join(parts)
    return where


def _members(tp: Any, metadata: list[Any]) -> list[Any]:
    """The alternatives of ``tp`` without None, Annotated unwrapped (its metadata collected)."""
    if tp is None:
        return []
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *extra = get_args(tp)
        metadata.extend(extra)
        return _members(inner, metadata)
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(tp) if arg is not type(None) for m in _members(arg, metadata)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_dict(members: list[Any]) -> bool:
    return len(members) == 1 and get_origin(members[0]) is dict


def _by_tag(models: Sequence[Any]) -> dict[str, type[BaseModel]]:
    """Members of a tagged union by their ``kind`` (or, for a plain union, by class name)."""
    tagged: dict[str, type[BaseModel]] = {}
    for model in models:
        tagged[model.__name__] = model
        for tag in _tags_of(model):
            tagged[tag] = model
    return tagged


def _tags_of(model: type[BaseModel], discriminator: str = "kind") -> list[str]:
    forms = getattr(model, "KIND_FORMS", None)  # a kind that is free text of these forms
    if isinstance(forms, tuple):
        return [str(form) for form in forms]
    kind = model.model_fields.get(discriminator)
    if kind is None or get_origin(kind.annotation) is not Literal:
        return []
    return [str(v) for v in get_args(kind.annotation)]


def _union_kinds(where: _Where) -> list[str]:
    models = [m for m in _members(where.type_, []) if _is_model(m)]
    if len(models) < 2:
        return []
    return [tag for m in models for tag in _tags_of(m)]


def _path_part(item: int | str, *, first: bool, dict_key: bool) -> str:
    if isinstance(item, int):
        return f"[{item}]"
    if dict_key and not _IDENTIFIER.match(item):
        return f"[{json.dumps(item)}]"
    return item if first else f".{item}"


# -- messages for the main error kinds ----------------------------------------------------------


def _unknown_field(where: _Where, name: str) -> str:
    model = where.model
    if model is None:
        return _line(where.path, f"unknown field {name!r}")
    fields = sorted(model.model_fields, key=lambda f: f != "kind")  # the kind first, as written
    hint = None
    close = _closest(name, fields)
    if close and _is_secret_loc([name]):  # e.g. api_key: the key itself does not belong here
        hint = f"did you mean {close!r}? it takes the name of an environment variable, not a key"
    elif close:
        hint = f"did you mean {close!r}?"
    elif owners := [t for m in where.siblings if name in m.model_fields for t in _tags_of(m)]:
        hint = f"{name!r} is a field of kind {', '.join(owners)}"
    elif parent := _nested_owner(model, name):
        hint = f"did you mean to put it under {parent!r}?"
    of_kind = f" for kind {where.tag!r}" if where.tag else ""
    valid = f"valid fields{of_kind}: {', '.join(fields)}"
    return _line(where.path, f"unknown field {name!r}", hint=hint, valid=valid)


def _nested_owner(model: type[BaseModel], name: str) -> str | None:
    """The field of ``model`` whose own model (or one of its kinds) has a field ``name``."""
    if name == "kind":  # every tagged union has one: pointing at any of them would mislead
        return None
    for field_name, info in model.model_fields.items():
        members = _members(info.annotation, [])
        if len(members) == 1 and get_origin(members[0]) is list:
            members = _members(get_args(members[0])[0], [])
        if any(_is_model(m) and name in m.model_fields for m in members):
            return field_name
    return None


def _bad_kind(where: _Where, kind: str, value: Any, ctx: dict[str, Any], secret: bool) -> str:
    discriminator = str(ctx.get("discriminator", "'kind'")).strip("'\"")
    if not discriminator.isidentifier():  # a callable discriminator: it reads ``kind`` too
        discriminator = "kind"
    path = f"{where.path}.{discriminator}" if where.path else discriminator
    kinds = _union_kinds(where) or re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
    valid = f"valid kinds: {', '.join(kinds)}" if kinds else ""
    if kind == "union_tag_not_found":
        hint = None
        models = [m for m in _members(where.type_, []) if _is_model(m)]
        given = set(value) if isinstance(value, dict) else set()
        fits = [t for m in models if given and given <= set(m.model_fields) for t in _tags_of(m)]
        if len(fits) == 1:
            hint = f"the fields given fit kind {fits[0]!r}"
        return _line(path, "required field missing", hint=hint, valid=valid)
    got = value.get(discriminator, ctx.get("tag")) if isinstance(value, dict) else ctx.get("tag")
    hint = _suggest(got, kinds)
    return _line(path, "unknown kind", got=got, hint=hint, valid=valid, secret=secret)


def _bad_literal(
    where: _Where, loc: Sequence[int | str], value: Any, ctx: dict[str, Any], secret: bool
) -> str:
    members = _members(where.type_, [])
    choices = [str(a) for m in members if get_origin(m) is Literal for a in get_args(m)]
    if not choices:
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
    is_kind = loc[-1:] == ("kind",)
    what = "unknown kind" if is_kind else "not a valid choice"
    valid = f"valid {'kinds' if is_kind else 'values'}: {', '.join(choices)}"
    return _line(
        where.path, what, got=value, hint=_suggest(value, choices), valid=valid, secret=secret
    )


def _bad_length(where: _Where, kind: str, value: Any, ctx: dict[str, Any], secret: bool) -> str:
    noun = "group" if where.path == "groups" else "item"
    if kind == "too_short":
        n = int(ctx.get("min_length", 1))
        what = "empty list" if ctx.get("actual_length") == 0 else "too few items"
        valid = f"give at least {'one' if n == 1 else n} {noun}{'' if n == 1 else 's'}"
    else:
        n = int(ctx.get("max_length", 0))
        what, valid = "too many items", f"give at most {n} {noun}{'' if n == 1 else 's'}"
    return _line(where.path, what, got=value, valid=valid, secret=secret)


def _not_a_mapping(where: _Where, value: Any, secret: bool) -> str:
    kinds = _union_kinds(where)
    if kinds:
        shorthand = _shorthand(where.metadata)
        expected = f"expected {shorthand + ' or ' if shorthand else ''}a mapping with a 'kind'"
        hint = f"did you mean {{kind: {value}}}?" if value in kinds else None
        valid = _valid_kinds(where)
        return _line(where.path, expected, got=value, hint=hint, valid=valid, secret=secret)
    models = [m for m in _members(where.type_, []) if _is_model(m)]
    valid = f"valid fields: {', '.join(models[0].model_fields)}" if len(models) == 1 else ""
    return _line(where.path, "expected a mapping", got=value, valid=valid, secret=secret)


def _shorthand(metadata: list[Any]) -> str | None:
    """What a BeforeValidator in front of a union also accepts: a bare integer or number."""
    for item in metadata:
        if not isinstance(item, BeforeValidator):
            continue
        coerce = cast(Callable[[Any], Any], item.func)
        try:
            if isinstance(coerce(1.5), dict):
                return "a number"
            if isinstance(coerce(1), dict):
                return "an integer"
        except Exception:  # a validator that needs more than a value: no shorthand to name
            continue
    return None


def _valid_kinds(where: _Where) -> str:
    kinds = _union_kinds(where)
    return f"valid kinds: {', '.join(kinds)}" if kinds else ""


def _description(where: _Where) -> str | None:
    text = where.field_info.description if where.field_info else None
    return text[:1].lower() + text[1:] if text else None


def _bounds(where: _Where, ctx: dict[str, Any]) -> str:
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    found: dict[str, Any] = {}
    for item in where.metadata:
        for name in words:
            bound = getattr(item, name, None)
            if isinstance(item, annotated_types.BaseMetadata) and bound is not None:
                found[name] = bound
    found = found or {k: v for k, v in ctx.items() if k in words}
    return " and ".join(f"{words[k]} {_number(v)}" for k, v in found.items())


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- showing values -----------------------------------------------------------------------------


def _line(
    path: str,
    what: str,
    *,
    got: Any = _NOT_GIVEN,
    hint: str | None = None,
    valid: str = "",
    secret: bool = False,
) -> str:
    text = f"{path}: {what}" if path else what
    if got is not _NOT_GIVEN:
        text += f"; got {HIDDEN if secret else show_value(got)}"
    if hint:
        text += f" ({hint})"
    return f"{text}; {valid}" if valid else text


def show_value(value: Any) -> str:
    """A bad value as short JSON-ish text, with anything that looks like a secret hidden."""
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return HIDDEN
    if isinstance(value, str) and len(value) > MAX_SHOWN_CHARS - 2:
        value = value[: MAX_SHOWN_CHARS - 3] + "…"  # cut inside the quotes, so they still close
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):  # circular or odd objects: their repr is enough
        text = repr(value)
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def _is_secret_loc(loc: Sequence[int | str]) -> bool:
    for item in loc:
        if isinstance(item, str) and set(re.split(r"[_\-\s.]+", item.lower())) & _SECRET_WORDS:
            return True
    return False


def _closest(word: str, choices: Sequence[str]) -> str | None:
    by_lower = {c.lower(): c for c in choices}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    starting = [c for c in choices if len(word) >= 2 and c.lower().startswith(word.lower())]
    if len(starting) == 1:
        return starting[0]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _suggest(value: Any, choices: Sequence[str]) -> str | None:
    if not isinstance(value, str) or value in choices:
        return None
    close = _closest(value, choices)
    return f"did you mean {close!r}?" if close else _env_hint(value)


def _quote_hint(value: Any) -> str | None:
    if isinstance(value, bool | int | float):
        return "put it in quotes to make it a string"
    return None


def _env_hint(value: Any) -> str | None:
    if isinstance(value, str) and _ENV_REFERENCE.search(value):
        return "environment variables are not expanded in config files"
    return None
