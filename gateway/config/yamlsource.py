"""Reading YAML safely, with the line of every value, so config problems can name their line.

Owns: the size and node-count caps (no alias bombs, no 10 MB files), the safe loader (no Python
tags), duplicate-key detection, and the map from a value's path (a tuple of keys/indices) to the
1-based line where it stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1 << 20
MAX_NODES = 100_000

Path = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """The parsed data, the line of each path, and problems found while reading."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line_of(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def format_path(path: Path) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def read_yaml(text: str) -> YamlDocument:
    """Parse `text`; syntax errors, oversize input and duplicate keys land in `problems`."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        return YamlDocument(None, problems=[f"<root>: file larger than {MAX_CONFIG_BYTES} bytes"])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, problems=["<root>: empty document"])
        doc = YamlDocument(None)
        _walk(node, (), doc, [0])
        if doc.problems:
            return doc
        doc.data = loader.construct_document(node)
        return doc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        where = f" (line {line})" if line else ""
        return YamlDocument(None, problems=[f"<root>: invalid YAML: {exc.problem}{where}"])
    except yaml.YAMLError as exc:
        return YamlDocument(None, problems=[f"<root>: invalid YAML: {exc}"])
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: Path, doc: YamlDocument, count: list[int]) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        if count[0] == MAX_NODES + 1:
            doc.problems.append(f"<root>: more than {MAX_NODES} values (alias expansion?)")
        return
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                line = key_node.start_mark.line + 1
                doc.problems.append(f"{format_path((*path, key))}: duplicate key (line {line})")
            seen.add(key)
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), doc, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), doc, count)
