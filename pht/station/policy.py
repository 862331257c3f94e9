"""A station's policy: which purposes, which disclosure classes, which minimum cell size.

Parsed strictly from YAML (unknown keys are errors with file and line) into a frozen
:class:`Policy`. Policies fail closed: an empty purpose or class list is invalid rather
than permissive, and a station without a policy file does not start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pht import yamlcfg
from pht.manifest import DISCLOSURE_CLASSES

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
"""The documented strict default shipped in ``policies/default.yaml``."""

_KEYS = {"min_cell_size", "disclosure_classes", "purposes"}


@dataclass(frozen=True)
class Policy:
    """What a station allows."""

    source: Path
    min_cell_size: int
    disclosure_classes: frozenset[str]
    purposes: frozenset[str]

    def refusal(self, purpose: str, disclosure_class: str) -> str | None:
        """Why a request with this purpose and output class is refused, or None."""
        if purpose not in self.purposes:
            return (
                f"purpose '{purpose}' is not allowed by this station's policy "
                f"(allowed: {', '.join(sorted(self.purposes))})"
            )
        if disclosure_class not in self.disclosure_classes:
            return (
                f"disclosure class '{disclosure_class}' is not allowed by this "
                f"station's policy (allowed: {', '.join(sorted(self.disclosure_classes))})"
            )
        return None


def load_policy(path: Path) -> Policy:
    """Parse and validate a policy file."""
    root = yamlcfg.load(path).mapping(_KEYS)
    k_node = root.require("min_cell_size")
    k = k_node.as_type(int)
    if k < 1:
        raise k_node.error("must be at least 1 (10 is the recommended default)")
    classes_node = root.require("disclosure_classes")
    classes = classes_node.as_str_list()
    if not classes:
        raise classes_node.error("must list at least one class (fail closed)")
    for item, name in zip(classes_node.items(), classes, strict=True):
        if name not in DISCLOSURE_CLASSES:
            raise item.error(
                f"unknown disclosure class '{name}'; use {', '.join(DISCLOSURE_CLASSES)}"
            )
    purposes_node = root.require("purposes")
    purposes = purposes_node.as_str_list()
    if not purposes:
        raise purposes_node.error("must list at least one purpose (fail closed)")
    return Policy(path, k, frozenset(classes), frozenset(purposes))
