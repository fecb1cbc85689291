"""The configuration reference, rendered from the schema itself so it cannot drift.

Every section of the config is a pydantic model in `schema.py`; its docstring introduces it and
every field carries a `description`. `render()` writes one Markdown table per model class (in the
order they are first reached from `GatewayConfig`), naming every place the section appears, each
key's type with its bounds, its default and its description. `docs/configuration.md` holds the
output between two markers (`make docs` rewrites it; a test fails when it is stale or when a
field has no description).
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gateway.config.schema import GatewayConfig

BEGIN = "<!-- BEGIN GENERATED: python -m gateway.config.reference -->"
END = "<!-- END GENERATED -->"
PLACEHOLDERS = {"models": "<model>", "versions": "<version>"}


def sections(root: type[BaseModel] = GatewayConfig) -> dict[type[BaseModel], list[str]]:
    """Each model class reachable from `root`, with every config path where it appears."""
    found: dict[type[BaseModel], list[str]] = {root: [""]}
    queue: list[tuple[type[BaseModel], str]] = [(root, "")]
    while queue:
        model, prefix = queue.pop(0)
        for name, field in model.model_fields.items():
            for kind, sub in _nested(field.annotation):
                path = f"{prefix}{name}"
                if kind == "dict":
                    path += f".{PLACEHOLDERS.get(name, '<name>')}"
                elif kind == "list":
                    path += "[]"
                first = sub not in found
                found.setdefault(sub, []).append(path)
                if first:
                    queue.append((sub, path + "."))
    return found


def undocumented(root: type[BaseModel] = GatewayConfig) -> list[str]:
    """`Class.field` for every field without a description (the reference needs one each)."""
    return [
        f"{model.__name__}.{name}"
        for model in sections(root)
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]


def render(root: type[BaseModel] = GatewayConfig) -> str:
    """The reference as Markdown: one table per section."""
    out: list[str] = []
    for model, paths in sections(root).items():
        where = ", ".join(f"`{p}`" for p in paths) if paths != [""] else "the top level"
        title = f"`{paths[0].rsplit('.', 1)[-1]}`" if paths != [""] else "Top level"
        out.append(f"### {title}\n")
        out.append(f"At {where}. {_doc(model)}\n")
        out.append("| Key | Type | Default | Meaning |")
        out.append("|---|---|---|---|")
        for name, field in model.model_fields.items():
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{name}` | {_type(field)} | {_default(field)} | {description} |")
        out.append("")
    return "\n".join(out)


def replace_generated(text: str, generated: str) -> str:
    """`text` with the part between the markers replaced by `generated`."""
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n\n{generated}\n{END}{tail}"


def _doc(model: type[BaseModel]) -> str:
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def _nested(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The model classes inside a field's type: ("model"|"dict"|"list", class)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "model", annotation
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _nested(arg)
    elif origin is dict and _is_model(args[1]):
        yield "dict", args[1]
    elif origin in (tuple, list) and args and _is_model(args[0]):
        yield "list", args[0]


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _type(field: FieldInfo) -> str:
    text = _type_name(field.annotation)
    bounds = []
    for item in field.metadata:
        if isinstance(item, Ge):
            bounds.append(f"≥ {item.ge}")
        elif isinstance(item, Gt):
            bounds.append(f"> {item.gt}")
        elif isinstance(item, Le):
            bounds.append(f"≤ {item.le}")
        elif isinstance(item, Lt):
            bounds.append(f"< {item.lt}")
        if isinstance(item, MinLen):
            bounds.append(f"at least {item.min_length}")
        if isinstance(item, MaxLen):
            bounds.append(f"at most {item.max_length}")
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is dict:
        return f"map of {_type_name(args[0])} → {_type_name(args[1])}"
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}"
    if _is_model(annotation):
        return "section"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "none"
    if isinstance(value, tuple | list) and value and isinstance(value[0], BaseModel):
        return "(see below)"
    return f"`{json.dumps(list(value) if isinstance(value, tuple) else value)}`"


if __name__ == "__main__":
    print(render())
