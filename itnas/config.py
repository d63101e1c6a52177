"""Configuration files: safe YAML, `--set dotted.key=value` overrides, schema defaults and checks.

Each kind of config (search, train) has a JSON schema in `itnas/schemas/<kind>.json`; both take
the same `runtime` block (`schemas/runtime.json`, referenced as `{"$ref": "runtime.json"}`).
The schema is the single source of defaults ("default" keywords); the YAML files under
`config/` state the paper's values explicitly for readers. Every problem becomes one
`UserError` line naming the file and the key, raised before any work starts.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from itnas.errors import UserError
from itnas.files import YAMLRefused, parse_yaml, read_yaml, yaml_problem

SHARED = {"runtime.json"}  # schemas other schemas include by reference


@cache
def load_schema(kind: str) -> dict:
    """The schema of config kind `kind`, its shared blocks included."""
    schema = _schema_file(f"{kind}.json")
    for key, sub in schema.get("properties", {}).items():
        if sub.get("$ref") in SHARED:
            shared = _schema_file(sub["$ref"])
            shared.pop("$schema", None)
            schema["properties"][key] = shared
    return schema


def _schema_file(name: str) -> dict:
    try:
        return json.loads(resources.files("itnas.schemas").joinpath(name).read_text())
    except FileNotFoundError:
        raise UserError(f"unknown config kind '{name.removesuffix('.json')}'") from None


def defaults(kind: str) -> dict:
    """A config of kind `kind` holding every default of its schema."""
    return fill_defaults({}, load_schema(kind))


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists stay values."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif prefix:
        out[prefix] = obj
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split 'a.b.c=value' into (['a', 'b', 'c'], parsed value); the value is YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"--set '{item}': expected dotted.key=value")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except YAMLRefused as exc:
        raise UserError(f"--set '{item}': value {yaml_problem(exc)}") from None
    except yaml.YAMLError:
        raise UserError(f"--set '{item}': value is not valid YAML") from None
    return key.split("."), value


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        path, value = parse_override(item)
        node = cfg
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set '{item}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return cfg


def fill_defaults(cfg: Any, schema: dict) -> Any:
    """Return cfg with every missing key that the schema gives a default for filled in."""
    if schema.get("type") != "object" or not isinstance(cfg, dict):
        return cfg
    out = dict(cfg)
    for key, sub in schema.get("properties", {}).items():
        if key not in out:
            if "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object":
                out[key] = {}
        if key in out:
            out[key] = fill_defaults(out[key], sub)
    return out


def _describe(error) -> tuple[str, str]:
    key = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        name = ".".join(filter(None, [key, extra[0] if extra else "?"]))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return name, f"unknown key (expected one of: {allowed})"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return ".".join(filter(None, [key, missing])), "required key is missing"
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return key, f"expected one of {choices}, got {error.instance!r}"
    if error.validator == "type":
        if isinstance(error.instance, float) and not math.isfinite(error.instance) and "number" in error.validator_value:
            return key, f"expected a finite number, got {error.instance!r}"
        return key, f"expected {error.validator_value}, got {error.instance!r}"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        rel = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
        return key, f"expected a number {rel[error.validator]} {error.validator_value}, got {error.instance!r}"
    if error.validator == "pattern":
        note = error.schema.get("description")
        return key, f"got {error.instance!r}; expected " + (note or f"text matching {error.validator_value!r}")
    return key, error.message


def _is_integer(checker, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)  # 2.0 is not an integer here


def _is_number(checker, instance: Any) -> bool:
    # NaN passes every bound (each comparison is false) and infinity most: neither is a setting.
    return isinstance(instance, (int, float)) and not isinstance(instance, bool) and math.isfinite(instance)


@cache
def _validator_class():
    """Draft 2020-12, except that an integer is an int (JSON Schema also takes 2.0, which `range`
    does not) and a number is finite."""
    import jsonschema  # optional where only `itnas bench` runs (a lent GPU machine has torch, not this)

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    return jsonschema.validators.extend(base, type_checker=checker)


def _check_keys(obj: Any, source: str, prefix: str = "") -> None:
    """Every mapping key is text: YAML also reads `1:`, `true:` and `null:` as keys."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if not isinstance(key, str):
                raise UserError(f"{source}: key '{name}': keys are names, got {type(key).__name__} {key!r}")
            _check_keys(value, source, name)
    elif isinstance(obj, list):
        for k, value in enumerate(obj):
            _check_keys(value, source, f"{prefix}[{k}]")


def first_problem(cfg: Any, schema: dict) -> tuple[str, str] | None:
    """(dotted key, what is wrong) of the shallowest problem of `cfg` under `schema`, or None."""
    errors = sorted(_validator_class()(schema).iter_errors(cfg),
                    key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    return _describe(errors[0]) if errors else None


def validate(cfg: Any, schema: dict, source: str) -> None:
    """Check `cfg` against `schema`; the first problem is one UserError line naming `source`."""
    _check_keys(cfg, source)
    problem = first_problem(cfg, schema)
    if problem:
        key, what = problem
        where = f"key '{key}'" if key else "top level"
        raise UserError(f"{source}: {where}: {what}")


def check_value(kind: str, key: str, value: Any, flag: str) -> None:
    """Check a command-line value against the schema entry of config key `key` (dotted) of
    config kind `kind`, so that a flag and the config key it mirrors take the same values."""
    schema = load_schema(kind)
    for part in key.split("."):
        schema = schema["properties"][part]
    problem = first_problem(value, schema)
    if problem:
        raise UserError(f"{flag} {value}: {problem[1]}")


def load_config(
    path: str | Path | None,
    kind: str,
    overrides: Iterable[str] = (),
    check: Callable[[dict, str], None] | None = None,
) -> dict:
    """Read, override, default-fill and validate a config; `check` adds cross-key rules."""
    schema = load_schema(kind)
    source = str(path) if path is not None else f"<{kind} defaults>"
    raw = {} if path is None else read_yaml(path, "config file")
    if raw is None:  # an empty file (or only comments) is more likely a mistake than a wish for defaults
        raise UserError(f"{source}: the file is empty (no keys, only blank lines or comments); expected a "
                        f"{kind} recipe, or no --config for the schema's defaults")
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    overrides = list(overrides or ())
    cfg = apply_overrides(raw, overrides)
    if overrides:
        source = f"{source} (with --set {' '.join(overrides)})"
    cfg = fill_defaults(cfg, schema)
    validate(cfg, schema, source)
    if check is not None:
        check(cfg, source)
    return cfg


def check_workflow_recipes(config: dict) -> None:
    """Every job recipe the workflow config names, with the `set` lists its jobs apply, read and
    checked as the command would (`load_config`), so that `snakemake -n` refuses what a job would
    refuse hours later: the command's one-line error, after the config key that brings it in.

    The recipes: search.config (a search recipe), select.config, train.cifar.config and
    train.imagenet.config (training recipes). Each is checked alone (a problem is blamed on its
    `.config` key), then with its `.set` list, then, for the trainings, with each benchmark's
    `evaluate.<bench>.set` after it (the ImageNet benchmark trains with train.imagenet, the others
    with train.cifar). Relative recipe paths are read from the current folder, as the jobs do."""
    train, evaluate = config.get("train") or {}, config.get("evaluate") or {}
    recipes = [("search", "search", config.get("search") or {}, []), ("select", "train", config.get("select") or {}, [])]
    for protocol in ("cifar", "imagenet"):
        benchmarks = [(f"evaluate.{bench}.set", list((target or {}).get("set") or []))
                      for bench, target in evaluate.items() if (bench == "imagenet") == (protocol == "imagenet")]
        recipes.append((f"train.{protocol}", "train", train.get(protocol) or {}, [b for b in benchmarks if b[1]]))
    for key, kind, entry, benchmarks in recipes:
        path, sets = entry.get("config"), list(entry.get("set") or [])
        if path is None:
            continue
        layers = [(f"{key}.config", []), *([(f"{key}.set", sets)] if sets else [])]
        layers += [(name, sets + extra) for name, extra in benchmarks]
        for blamed, overrides in layers:
            try:
                load_config(path, kind, overrides)
            except UserError as exc:
                raise UserError(f"config key '{blamed}' ({kind} recipe): {exc}") from None


def check_workflow_config(config: dict, sources: Sequence[tuple[str, Any]], schema_file: str | Path) -> None:
    """The workflow's merged config against its schema, in one line naming the file and key.

    `sources` are (name, path or mapping) in the order they were merged, later ones winning
    (config/config.yaml, the `--configfile` overlays, Snakemake's `--config` items): each file is
    read again here so that its own problems (duplicate keys, keys that are not names) name it,
    and a bad key is blamed on the last source that sets it."""
    layers = []
    for name, content in sources:
        raw = read_yaml(content, "workflow config file") if isinstance(content, (str, Path)) else content
        if raw is not None and not isinstance(raw, dict):
            raise UserError(f"{name}: expected a mapping of keys at the top level, got {type(raw).__name__}")
        _check_keys(raw or {}, name)
        layers.append((name, raw or {}))
    problem = first_problem(config, read_yaml(schema_file, "schema"))
    if problem:
        key, what = problem
        where = f"key '{key}'" if key else "top level"
        raise UserError(f"{_blame(key, layers)}: {where}: {what}")


def _blame(key: str, layers: list[tuple[str, dict]]) -> str:
    """The last of `layers` that sets `key` (or its nearest parent); all of them when none does."""
    parts = key.split(".") if key else []
    for depth in range(len(parts), 0, -1):
        for name, raw in reversed(layers):
            if _sets(raw, parts[:depth]):
                return name
    return " + ".join(name for name, _ in layers)


def _sets(raw: Any, parts: list[str]) -> bool:
    for part in parts:
        if isinstance(raw, dict) and part in raw:
            raw = raw[part]
        elif isinstance(raw, list) and part.isdigit() and int(part) < len(raw):
            raw = raw[int(part)]
        else:
            return False
    return True
