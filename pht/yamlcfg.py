"""Strict YAML reading: ``yaml.safe_load`` semantics, with file and line in every error.

Configuration files (network, study, policy, manifest) are parsed through :class:`Node`
so that an unknown key, a missing key or a value of the wrong type is reported as::

    study.yaml:4: key 'paramters' is not allowed here; allowed: question, purpose, ...

Nothing is coerced silently: ``"10"`` is not an integer and ``yes`` is not a string.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pht.errors import ConfigError

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


class Node:
    """A YAML value with the file, line and dotted key path it came from."""

    def __init__(self, node: yaml.Node, file: Path, where: str) -> None:
        self._node = node
        self.file = file
        self.where = where

    @property
    def line(self) -> int:
        """The 1-based line the value starts on."""
        return int(self._node.start_mark.line) + 1

    def error(self, message: str) -> ConfigError:
        """Build a :class:`ConfigError` located at this node."""
        key = f" {self.where}:" if self.where else ""
        return ConfigError(f"{self.file}:{self.line}:{key} {message}")

    # -- scalars ---------------------------------------------------------------
    def value(self) -> Any:
        """The plain Python value (as ``yaml.safe_load`` would give it)."""
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(self._node)
        finally:
            loader.dispose()

    def as_type(self, kind: type | tuple[type, ...]) -> Any:
        """Return the value if it has type ``kind``; raise a located error otherwise."""
        value = self.value()
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = any(
            isinstance(value, k) and not (k in (int, float) and isinstance(value, bool))
            for k in kinds
        )
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
            value = float(value)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise self.error(f"expected {expected}, got {value!r}")
        return value

    def as_str(self) -> str:
        """The value as a non-empty string."""
        value = self.as_type(str)
        if not value.strip():
            raise self.error("must not be empty")
        return str(value)

    def as_str_list(self) -> list[str]:
        """The value as a list of non-empty strings."""
        return [item.as_str() for item in self.items()]

    # -- collections -----------------------------------------------------------
    def items(self) -> list[Node]:
        """The elements of a sequence node."""
        if not isinstance(self._node, yaml.SequenceNode):
            raise self.error(f"expected a list, got {self.value()!r}")
        return [
            Node(child, self.file, f"{self.where}[{i}]")
            for i, child in enumerate(self._node.value)
        ]

    def mapping(self, allowed: set[str] | None = None) -> Mapping:
        """View this node as a mapping, rejecting keys outside ``allowed``."""
        if not isinstance(self._node, yaml.MappingNode):
            raise self.error(f"expected a mapping (key: value), got {self.value()!r}")
        return Mapping(self, allowed)

    def raw_mapping_nodes(self) -> Iterator[tuple[str, Node]]:
        """Iterate over (key, value node) of a free-form mapping."""
        return iter(self.mapping(None).children.items())


class Mapping:
    """A mapping node with required/optional accessors and unknown-key rejection."""

    def __init__(self, node: Node, allowed: set[str] | None) -> None:
        self.node = node
        self.children: dict[str, Node] = {}
        prefix = f"{node.where}." if node.where else ""
        for key_node, value_node in node._node.value:  # noqa: SLF001
            key = key_node.value
            located = Node(key_node, node.file, node.where)
            if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
                raise located.error(f"key {key!r} must be a string")
            if key in self.children:
                raise located.error(f"key '{prefix}{key}' appears twice; keep one")
            if allowed is not None and key not in allowed:
                raise located.error(
                    f"key '{prefix}{key}' is not allowed here; allowed: "
                    + ", ".join(sorted(allowed))
                )
            self.children[key] = Node(value_node, node.file, f"{prefix}{key}")

    def __contains__(self, key: str) -> bool:
        return key in self.children

    def get(self, key: str) -> Node | None:
        """The value node of ``key`` or None."""
        return self.children.get(key)

    def require(self, key: str) -> Node:
        """The value node of ``key``; a located error if it is missing."""
        if key not in self.children:
            where = f"{self.node.where}." if self.node.where else ""
            raise self.node.error(f"missing required key '{where}{key}'")
        return self.children[key]


def load(path: Path) -> Node:
    """Parse a YAML file into a :class:`Node`; YAML syntax errors name file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(
            f"{path}:{line}: malformed YAML ({exc.problem}); fix the syntax"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({exc}); fix the syntax") from None
    if root is None:
        raise ConfigError(f"{path}: the file is empty; see the README for its format")
    return Node(root, path, "")
