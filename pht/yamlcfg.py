"""Strict YAML reading: ``yaml.safe_load`` semantics, with file and line in every error.

Configuration files (network, study, policy, keyring, manifest) are parsed through
:class:`Node` so that an unknown key, a missing key or a value of the wrong type is
reported as::

    study.yaml:4: key 'paramters' is not allowed here; allowed: question, purpose, ...

Nothing is coerced silently: ``"10"`` is not an integer and ``yes`` is not a string.

Every file is read as hostile input. :func:`load` refuses, as a one-line
:class:`~pht.errors.ConfigError` naming file and line:

* files over :data:`MAX_BYTES`, that are not UTF-8 (a UTF-8 BOM is allowed), or that
  hold a NUL byte;
* anchors and aliases (``&a`` / ``*a``: the "billion laughs" expansion), merge keys
  (``<<``) and explicit tags (``!!str``, ``!!python/object:...``, ``!foo``, ``!``);
* nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values, keys
  longer than :data:`MAX_KEY_CHARS`, values longer than :data:`MAX_SCALAR_CHARS`, and
  control characters or lone surrogates in keys and values (double-quoted escapes).

Values quoted in error messages are cut to :data:`MAX_QUOTE_CHARS`; a whole message to
:data:`MAX_MESSAGE_CHARS`. :func:`load_json` applies the same caps to JSON files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

from pht.errors import ConfigError

MAX_BYTES: Final = 256 * 1024
"""Largest configuration file read (256 KiB; pure-Python parsing takes ~0.3 s)."""
MAX_DEPTH: Final = 32
"""Deepest nesting: a scalar inside 31 nested lists or mappings is at depth 32."""
MAX_NODES: Final = 5_000
"""Most values (scalars, lists and mappings) in one file (the largest shipped: 337)."""
MAX_KEY_CHARS: Final = 200
"""Longest mapping key."""
MAX_SCALAR_CHARS: Final = 10_000
"""Longest scalar value."""
MAX_QUOTE_CHARS: Final = 60
"""Longest value quoted in an error message (longer ones end in an ellipsis)."""
MAX_MESSAGE_CHARS: Final = 600
"""Longest error message built by :meth:`Node.error`."""

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_STR_TAG: Final = "tag:yaml.org,2002:str"
# C0 and C1 controls except tab, line feed and carriage return; lone surrogates
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


def quote(value: Any, limit: int = MAX_QUOTE_CHARS) -> str:
    """``repr`` of a scalar cut to ``limit`` characters; lists and mappings by kind.

    Safe to put in a message: ``repr`` escapes control characters and surrogates, and
    a structure is never expanded.

    Examples
    --------
    >>> quote("x" * 100)[-5:]
    'xxxx…'
    >>> quote({"a": [1, 2]})
    'a mapping'
    """
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _elide(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut the middle out of an over-long message, keeping its start and its fix."""
    if len(message) <= limit:
        return message
    half = (limit - 3) // 2
    return f"{message[:half]} … {message[-half:]}"


def _located(file: Path, line: int | None, message: str) -> ConfigError:
    where = f"{file}:{line}:" if line is not None else f"{file}:"
    return ConfigError(_elide(f"{where} {message}"))


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
        """Build a :class:`ConfigError` located at this node (bounded in length)."""
        key = f" {self.where}:" if self.where else ""
        return ConfigError(_elide(f"{self.file}:{self.line}:{key} {message}"))

    # -- scalars ---------------------------------------------------------------
    def value(self) -> Any:
        """The plain Python value (as ``yaml.safe_load`` would give it)."""
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(self._node)
        except (ValueError, OverflowError, TypeError, yaml.YAMLError):
            # e.g. the date 2026-13-45, a time zone of +99:00, a 5,000-digit integer
            raise self.error(
                "cannot read this value; write it in the usual form (a date as "
                "2026-01-31, a time as 2026-01-31T12:00:00Z) or quote it as a string"
            ) from None
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
            raise self.error(f"expected {expected}, got {quote(value)}")
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
            raise self.error(f"expected a list, got {self._describe()}")
        return [
            Node(child, self.file, f"{self.where}[{i}]")
            for i, child in enumerate(self._node.value)
        ]

    def mapping(self, allowed: set[str] | None = None) -> Mapping:
        """View this node as a mapping, rejecting keys outside ``allowed``."""
        if not isinstance(self._node, yaml.MappingNode):
            raise self.error(f"expected a mapping (key: value), got {self._describe()}")
        return Mapping(self, allowed)

    def raw_mapping_nodes(self) -> Iterator[tuple[str, Node]]:
        """Iterate over (key, value node) of a free-form mapping."""
        return iter(self.mapping(None).children.items())

    def _describe(self) -> str:
        if isinstance(self._node, yaml.SequenceNode):
            return "a list"
        if isinstance(self._node, yaml.MappingNode):
            return "a mapping"
        return quote(self.value())


class Mapping:
    """A mapping node with required/optional accessors and unknown-key rejection."""

    def __init__(self, node: Node, allowed: set[str] | None) -> None:
        self.node = node
        self.children: dict[str, Node] = {}
        prefix = f"{node.where}." if node.where else ""
        for key_node, value_node in node._node.value:  # noqa: SLF001
            located = Node(key_node, node.file, node.where)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                shown = (
                    f" {quote(key_node.value)}"
                    if isinstance(key_node, yaml.ScalarNode)
                    else ""
                )
                raise located.error(
                    f"key{shown} must be a string; quote it or write a plain name"
                )
            key = str(key_node.value)
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


# -- reading ----------------------------------------------------------------------
def read(path: Path) -> bytes:
    """The bytes of a configuration file, at most :data:`MAX_BYTES` of them.

    Raises
    ------
    ConfigError
        The file is missing, unreadable or too large.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a file; give the file in it")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the file ({exc.strerror}); check its permissions"
        ) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_BYTES // 1024} KiB, the limit for configuration "
            "files; check that this is the right file"
        )
    return data


def _text(data: bytes, path: Path) -> str:
    """Decode UTF-8 (an initial BOM is dropped); NUL bytes and other encodings fail."""
    if data.startswith(_UTF16_32_BOMS):
        raise _located(path, 1, "the file is UTF-16 or UTF-32; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise _located(
            path,
            line,
            "NUL byte in the file; is it a binary file? save it as UTF-8 text",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _located(
            path,
            line,
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
        ) from None


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` whose composer refuses aliases, tags, merges and excess size."""

    def __init__(self, text: str, path: Path) -> None:
        super().__init__(text)
        self.path = path
        self.depth = 0
        self.count = 0

    def _refuse(self, mark: Any, message: str) -> ConfigError:
        return _located(self.path, int(mark.line) + 1, message)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise self._refuse(
                event.start_mark,
                "YAML aliases/anchors are not allowed; write the value out",
            )
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise self._refuse(
                event.start_mark,
                f"explicit YAML tags ({quote(tag)}) are not allowed; remove the tag "
                "and write a plain value",
            )
        self.count += 1
        if self.count > MAX_NODES:
            raise self._refuse(
                event.start_mark,
                f"more than {MAX_NODES} values in one file; is this the right file?",
            )
        if self.depth >= MAX_DEPTH:
            raise self._refuse(
                event.start_mark,
                f"nested deeper than {MAX_DEPTH} levels; flatten the structure",
            )
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if isinstance(node, yaml.ScalarNode):
            self._check_scalar(
                node, is_key=isinstance(parent, yaml.MappingNode) and index is None
            )
        return node

    def _check_scalar(self, node: yaml.ScalarNode, *, is_key: bool) -> None:
        if node.tag == _MERGE_TAG:
            raise self._refuse(
                node.start_mark,
                "YAML merge keys (<<) are not allowed; write the keys out",
            )
        value = str(node.value)
        limit = MAX_KEY_CHARS if is_key else MAX_SCALAR_CHARS
        if len(value) > limit:
            what = "key" if is_key else "value"
            raise self._refuse(
                node.start_mark,
                f"{what} {quote(value)} is longer than {limit} characters; shorten it",
            )
        if _BAD_CHAR.search(value):
            what = "key" if is_key else "value"
            raise self._refuse(
                node.start_mark,
                f"{what} {quote(value)} holds a control character or an invalid code "
                "point; remove it",
            )


def parse(data: bytes, path: Path) -> Node:
    """Parse the bytes of YAML file ``path`` into a :class:`Node` (see module doc).

    Raises
    ------
    ConfigError
        Every problem, as one line naming the file and, where known, the line.
    """
    path = Path(path)
    text = _text(data, path)
    try:
        loader = _StrictLoader(text, path)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = ", ".join(str(p) for p in (exc.context, exc.problem) if p) or "?"
        raise _located(
            path, line, f"malformed YAML ({_elide(problem, 120)}); fix the syntax"
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(int(exc.position), 0)) + 1
        raise _located(
            path,
            line,
            f"character U+{int(exc.character):04X} is not allowed in YAML; remove it",
        ) from None
    except yaml.YAMLError as exc:
        raise _located(
            path, None, f"malformed YAML ({_elide(str(exc), 120)}); fix the syntax"
        ) from None
    if root is None:
        raise ConfigError(f"{path}: the file is empty; see the README for its format")
    return Node(root, path, "")


def load(path: Path) -> Node:
    """Read and parse a YAML file (see the module docstring for what is refused)."""
    return parse(read(path), path)


def load_json(path: Path) -> Any:
    """Read a JSON file with the caps of :func:`load`, as plain Python values.

    Refuses files over :data:`MAX_BYTES`, non-UTF-8 text, ``NaN``/``Infinity``,
    duplicate keys and nesting deeper than :data:`MAX_DEPTH`.

    Raises
    ------
    ConfigError
        Every problem, as one line naming the file and, where known, the line.
    """
    path = Path(path)
    text = _text(read(path), path)

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ValueError(f"key {quote(key)} appears twice")
            result[key] = value
        return result

    try:
        value = json.loads(text, parse_constant=constant, object_pairs_hook=pairs)
    except RecursionError:
        value = None
        too_deep = True
    except json.JSONDecodeError as exc:
        raise _located(
            path, exc.lineno, f"not valid JSON ({exc.msg}); check the file"
        ) from None
    except ValueError as exc:
        raise _located(
            path, None, f"not valid JSON ({_elide(str(exc), 120)}); check the file"
        ) from None
    else:
        too_deep = json_depth(value) > MAX_DEPTH
    if too_deep:
        raise _located(
            path, None, f"nested deeper than {MAX_DEPTH} levels; check the file"
        )
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (a scalar has depth 0), iteratively."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest
