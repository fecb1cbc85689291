"""Loading a config: YAML text → validated, frozen `GatewayConfig`, or every problem with its line.

`load_config(path)` is the one place that does everything that can fail (read, parse, type-check,
cross-check); whatever it returns is valid, and a rejected config raises `ConfigError` listing
every problem as `models.chat.routing.weights.v3: unknown version 'v3' (line 24)`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path as FsPath

from pydantic import ValidationError

from gateway.config.checks import check_config, check_typed
from gateway.config.schema import GatewayConfig
from gateway.config.yamlsource import MAX_CONFIG_BYTES, Path, YamlDocument, format_path, read_yaml
from gateway.errors import ConfigError

__all__ = ["GatewayConfig", "load_config", "parse_config"]


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read and validate the config file at `path`; raise `ConfigError` with every problem."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{FsPath(path)}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{FsPath(path)}: not UTF-8 text"]) from None
    return parse_config(text, os.environ if environ is None else environ)


def parse_config(text: str, environ: Mapping[str, str]) -> GatewayConfig:
    """Validate config `text`; raise `ConfigError` listing every problem with its line."""
    doc = read_yaml(text)
    if doc.problems:
        raise ConfigError(doc.problems)
    if not isinstance(doc.data, dict):
        raise ConfigError(["<root>: the config must be a mapping (key: value)"])
    problems: list[str] = []
    cfg = None
    try:
        cfg = GatewayConfig.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, doc))
    for path, message in check_config(doc.data, environ):
        line = _with_line(path, message, doc)
        if line not in problems:
            problems.append(line)
    if cfg is not None and not problems:
        problems = [_with_line(path, msg, doc) for path, msg in check_typed(cfg)]
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg


def _with_line(path: Path, message: str, doc: YamlDocument) -> str:
    line = doc.line_of(path)
    suffix = f" (line {line})" if line is not None else ""
    return f"{format_path(path)}: {message}{suffix}"


def _pydantic_problems(exc: ValidationError, doc: YamlDocument) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        path: Path = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if "input" in err and kind.endswith("_type"):
                message += f" (got {type(err['input']).__name__})"
        problems.append(_with_line(path, message, doc))
    return problems
