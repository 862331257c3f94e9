"""pht: a Personal Health Train framework for real-world evidence on expensive medicines.

Analyses ("trains") travel to data stations, run there under each station's policy and
return only aggregates; the orchestrator pools them into answers that equal the same
analysis on the pooled rows.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pht.api import Network, Result, Study, run

__all__ = ["Network", "Result", "Study", "__version__", "run"]

_API = frozenset({"Network", "Result", "Study", "run"})


def __getattr__(name: str) -> Any:
    """The Python API (:mod:`pht.api`), imported on first use: ``pht.run(...)``."""
    if name in _API:
        from pht import api

        return getattr(api, name)
    raise AttributeError(f"module 'pht' has no attribute {name!r}")
