"""The report's files next to ``report.html``: figures, tables, atomic publication.

While :func:`pht.orchestrator.report.render_report` lays out a page, every figure and
table it shows is also collected here (:class:`Exports`, reached through
:func:`current`) and written as ``figures/<name>.png``, ``figures/<name>.svg`` and
``tables/<name>.csv``. :func:`staged_report` renders into a staging folder inside
the output folder and moves ``figures/``, ``tables/`` and then ``report.html`` into
place only on success, so a failed render never leaves half a report.
:func:`load_result` reads a ``result.json`` for ``pht report`` with one-line errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from pht.errors import ConfigError

FIGURES = "figures"
TABLES = "tables"
PUBLISHED = (FIGURES, TABLES, "report.html")
"""What :func:`staged_report` moves into the output folder, in this order."""


def _slug(name: str) -> str:
    """A file name stem: lower case letters, digits, ``-`` and ``_``."""
    slug = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_")
    return slug or "item"


@dataclass
class Exports:
    """Figures (PNG bytes and the figure for SVG) and tables (data frames) by name."""

    figures: dict[str, tuple[bytes, Figure]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    section: str = "report"

    def _unique(self, name: str | None, taken: Mapping[str, Any]) -> str:
        stem = _slug(name or self.section)
        candidate, i = stem, 2
        while candidate in taken:
            candidate, i = f"{stem}_{i}", i + 1
        return candidate

    def add_figure(self, name: str | None, png: bytes, figure: Figure) -> str:
        """Keep a figure; return its file stem (``figures/<stem>.png``)."""
        stem = self._unique(name, self.figures)
        self.figures[stem] = (png, figure)
        return stem

    def add_table(self, name: str | None, frame: pd.DataFrame) -> str:
        """Keep a table; return its file stem (``tables/<stem>.csv``)."""
        stem = self._unique(name, self.tables)
        self.tables[stem] = frame
        return stem

    def mark(self) -> tuple[int, int]:
        """Remember how much is kept (see :meth:`rollback`)."""
        return len(self.figures), len(self.tables)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget what a section that failed to lay out added after ``mark``."""
        for stem in list(self.figures)[mark[0] :]:
            del self.figures[stem]
        for stem in list(self.tables)[mark[1] :]:
            del self.tables[stem]

    def write(self, out_dir: Path) -> None:
        """Write ``figures/*.png``, ``figures/*.svg`` and ``tables/*.csv``."""
        figures, tables = out_dir / FIGURES, out_dir / TABLES
        figures.mkdir(parents=True, exist_ok=True)
        tables.mkdir(parents=True, exist_ok=True)
        for stem, (png, figure) in self.figures.items():
            (figures / f"{stem}.png").write_bytes(png)
            figure.savefig(
                figures / f"{stem}.svg",
                format="svg",
                facecolor="white",
                metadata={"Date": None},
            )
        for stem, frame in self.tables.items():
            defuse_formulas(frame).to_csv(
                tables / f"{stem}.csv", index=False, lineterminator="\n"
            )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is run as a formula by a spreadsheet."""
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def defuse_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, with a ``'`` prefixed.

    Numbers (and text that is a plain number, such as ``-0.25``) are kept.

    >>> [defuse_cell(v) for v in ("=1+1", "-x", "-0.25", -3, "@A1", "ok")]
    ["'=1+1", "'-x", '-0.25', -3, "'@A1", 'ok']
    """
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_STARTS)
        and not _NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def defuse_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`defuse_cell` on its text cells and column names.

    CSV injection: OWASP's advice for exported tables.
    """
    out = frame.copy()
    for col in out.columns:
        # text columns: object (pandas 2) or a string dtype (pandas 3's default)
        kind = out[col].dtype
        if pd.api.types.is_object_dtype(kind) or pd.api.types.is_string_dtype(kind):
            out[col] = out[col].map(defuse_cell)
    out.columns = [defuse_cell(c) for c in out.columns]
    return out


_CURRENT: ContextVar[Exports | None] = ContextVar("pht_report_exports", default=None)


def current() -> Exports | None:
    """The collector of the page being rendered (``None`` outside a render)."""
    return _CURRENT.get()


@contextmanager
def collecting() -> Iterator[Exports]:
    """Collect the figures and tables of a render in a fresh :class:`Exports`."""
    exports = Exports()
    token = _CURRENT.set(exports)
    try:
        yield exports
    finally:
        _CURRENT.reset(token)


def _commit(staging: Path, out_dir: Path) -> Path:
    """Move the staged files into ``out_dir``; earlier ones are replaced."""
    for name in PUBLISHED:
        new, old = staging / name, out_dir / name
        if not new.exists():
            continue
        if new.is_dir() and old.is_dir():
            os.replace(old, staging / f".old-{name}")  # removed with the staging
        os.replace(new, old)
    return out_dir / "report.html"


@contextmanager
def staged_report(
    result: Mapping[str, Any], out_dir: Path
) -> Iterator[Callable[[], Path]]:
    """Render the report into a staging folder; yield a function that publishes it.

    The staging folder lives inside ``out_dir`` (same file system, so the moves are
    renames) and is removed on exit, published or not. Typical use::

        with staged_report(result, out) as publish:
            write_result_json(...)
            report_path = publish()
    """
    from pht.orchestrator.report import render_report

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        render_report(result, staging)
        yield lambda: _commit(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_report(result: Mapping[str, Any], out_dir: Path) -> Path:
    """Render ``report.html``, ``figures/`` and ``tables/`` into ``out_dir`` atomically.

    Returns the path of ``report.html``.
    """
    with staged_report(result, Path(out_dir)) as publish:
        return publish()


def load_result(path: Path) -> dict[str, Any]:
    """Read a ``result.json`` written by ``pht run`` (or the folder holding it).

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not JSON, not a pht result (no
        ``schema_version`` or ``train``) or of a newer schema than this pht reads.
    """
    from pht.orchestrator.run import SCHEMA_VERSION

    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    hint = "give the result.json that `pht run` wrote"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; {hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); {hint}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            f"{hint}"
        ) from None
    if not isinstance(data, dict) or not {"schema_version", "train"} <= set(data):
        raise ConfigError(
            f"{path}: not a pht result (it needs the keys schema_version and train); "
            f"{hint}"
        )
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(
            f"{path}: schema_version must be a positive whole number, "
            f"not {json.dumps(version)}; {hint}"
        )
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: schema_version {version} is newer than this pht reads "
            f"({SCHEMA_VERSION}); upgrade pht to render it"
        )
    return data
