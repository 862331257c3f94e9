"""The Python API: load or build a network and a study, run it, read the result.

The ``pht`` command line is a thin layer over these few names, so a notebook gets
the same checks, the same signed requests and the same result::

    import pht

    network = pht.Network.load("network.yaml")
    study = pht.Study.build(
        question="Is extended-interval dosing associated with survival?",
        purpose="package-management/reassessment",
        train="survival.cox",
        dataset="melanoma",
        parameters={"time": "os_days", "event": "death", "covariates": ["regimen"]},
        min_stations=2,
        network=network,
    )
    result = pht.run(study, network, identity="keys/analyst.key.json")
    result.summary()  # a pandas DataFrame, one row per coefficient
    result.plot_forest()  # a matplotlib Figure
    result.save("results")  # result.json + report.html, as `pht run --out`

Errors are the :mod:`pht.errors` types the CLI turns into one line and an exit code:
a study built in code is checked exactly like a ``study.yaml`` (its errors name the
key); a run held for manual review raises
:class:`~pht.orchestrator.run.StudyPending` (save it with
``exc.pending.save(out_dir, identity)`` and finish it with ``pht collect``). A result
from fewer stations than requested (but at least ``min_stations``) is returned, with
:attr:`Result.partial` true and :attr:`Result.missing` saying who and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pht.crypto import Identity
from pht.errors import ConfigError
from pht.orchestrator import config

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from pht.orchestrator.engine import ProgressCallback

PathLike = str | Path

BUILT = Path("Study.build")
"""The source label of a study built in code (errors and provenance name it)."""


@dataclass(frozen=True)
class Network:
    """A parsed ``network.yaml``: the stations, their keys and the engine."""

    config: config.Network

    @classmethod
    def load(cls, path: PathLike) -> Network:
        """Parse and check ``network.yaml`` (one-line :class:`ConfigError` if not)."""
        return cls(config.load_network(Path(path)))

    @property
    def source(self) -> Path:
        """The network file."""
        return self.config.source

    @property
    def stations(self) -> tuple[str, ...]:
        """Station ids, in file order."""
        return tuple(self.config.stations)

    def datasets(self, station: str) -> tuple[str, ...]:
        """The dataset ids a station publishes."""
        try:
            return self.config.stations[station].datasets
        except KeyError:
            known = ", ".join(self.stations)
            raise ConfigError(
                f"{self.source}: no station '{station}'; the network has: {known}"
            ) from None


@dataclass(frozen=True)
class Study:
    """A checked study: its train resolved in the catalogue, its keys validated."""

    config: config.Study

    @classmethod
    def load(cls, path: PathLike, network: Network | PathLike | None = None) -> Study:
        """Parse ``study.yaml``; with ``network``, also check stations and dataset."""
        from pht.manifest import Catalogue

        return cls(config.load_study(Path(path), Catalogue(), _network_config(network)))

    @classmethod
    def build(
        cls,
        *,
        question: str,
        purpose: str,
        train: str,
        dataset: str,
        parameters: Mapping[str, Any] | None = None,
        stations: Sequence[str] | None = None,
        min_stations: int | None = None,
        role: str | None = None,
        network: Network | PathLike | None = None,
        **unknown: Any,
    ) -> Study:
        """A study from keyword arguments, checked exactly like a ``study.yaml``.

        The arguments are the keys of a study file (``None`` leaves a key out);
        errors name the key, e.g. ``Study.build: parameters.time: expected a
        non-empty string (train survival.cox@1.4.0)``.
        """
        from pht.manifest import Catalogue

        if unknown:
            raise ConfigError(
                f"{BUILT}: {', '.join(sorted(unknown))}: not a study key; use question, "
                "purpose, train, dataset, parameters, stations, min_stations, role "
                "(and network)"
            )
        fields: dict[str, Any] = {
            "question": question,
            "purpose": purpose,
            "train": train,
            "dataset": dataset,
            "stations": None if stations is None else list(stations),
            "min_stations": min_stations,
            "parameters": None if parameters is None else dict(parameters),
            "role": role,
        }
        given = {k: v for k, v in fields.items() if v is not None}
        return cls(
            config.study_from_mapping(
                given, BUILT, Catalogue(), _network_config(network)
            )
        )

    @property
    def source(self) -> Path:
        """The study file, or :data:`BUILT` for a study built in code."""
        return self.config.source

    @property
    def train(self) -> str:
        """The train as ``name@version`` (the design's name for a study design)."""
        if self.config.design is not None:
            from pht.orchestrator.nma import DESIGN, NmaDesign

            return (
                DESIGN if isinstance(self.config.design, NmaDesign) else "equivalence"
            )
        return str(self.config.train.manifest.ref)

    @property
    def parameters(self) -> Mapping[str, Any]:
        """The parameters with the train's defaults filled in."""
        return self.config.parameters

    @property
    def min_stations(self) -> int | None:
        """The quorum; None means every requested station."""
        return self.config.min_stations


def _network_config(network: Network | PathLike | None) -> config.Network | None:
    """The parsed network of a :class:`Network`, a path to one, or None."""
    if network is None:
        return None
    if isinstance(network, Network):
        return network.config
    if isinstance(network, str | Path):
        return Network.load(network).config
    raise ConfigError(
        f"network: expected a pht.Network or the path of a network.yaml, not "
        f"{type(network).__name__}"
    )


def _identity(identity: Identity | PathLike) -> Identity:
    if isinstance(identity, Identity):
        return identity
    from pht.crypto import load_identity

    return load_identity(Path(identity))


def run(
    study: Study | PathLike,
    network: Network | PathLike,
    identity: Identity | PathLike,
    progress: ProgressCallback | None = None,
) -> Result:
    """Sign the study's request with ``identity``, run it on ``network``, pool.

    ``study`` and ``network`` may be paths of their files. ``progress`` is called as
    ``(station, event, reply)`` while stations work (see
    :data:`~pht.orchestrator.engine.ProgressCallback`).

    Raises
    ------
    QuorumError
        Fewer stations took part than the study's ``min_stations``.
    StudyPending
        Stations hold the output for manual review (a :class:`ReviewPending`).
    """
    from pht.manifest import Catalogue
    from pht.orchestrator.engine import make_engine
    from pht.orchestrator.requester import Requester
    from pht.orchestrator.run import run_study

    net = network if isinstance(network, Network) else Network.load(network)
    checked = study if isinstance(study, Study) else Study.load(study, net)
    requester = Requester(
        _identity(identity),
        {s: e.public_key for s, e in net.config.stations.items()},
    )
    with make_engine(net.config, Catalogue()) as engine:
        data = run_study(checked.config, net.config, engine, requester, progress)
    return Result(data)


def _report(name: str, result: Result) -> Any:
    """Call a public function of :mod:`pht.orchestrator.report` on ``result``.

    Imported on first use (matplotlib is slow to import); a result without the
    section it needs is a one-line :class:`ConfigError` naming the train.
    """
    from pht.orchestrator import report

    try:
        return getattr(report, name)(result.data)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"result of {result.train}: {name} cannot be made from it ({exc}); "
            "see .data for what it holds"
        ) from None


@dataclass(frozen=True)
class Result(Mapping[str, Any]):
    """A study's result: the ``result.json`` dict, with tables and figures.

    Like a statsmodels results object, it is returned by :func:`run` rather than
    stored on anything; :meth:`load` reads one written by ``pht run``. It is also a
    read-only mapping of ``result.json``'s keys, so every function that takes a
    parsed ``result.json`` (``pht.orchestrator.report.km_figure``, ``forest_figure``,
    ``pht.orchestrator.tables.summary_frame``) takes a :class:`Result` too.
    """

    data: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def load(cls, path: PathLike) -> Result:
        """Read ``result.json`` (or the ``--out`` folder that holds it)."""
        file = Path(path)
        if file.is_dir():
            file = file / "result.json"
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{file}: not found; give the result.json (or the --out folder) "
                "that `pht run` wrote"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(
                f"{file}: not a readable result.json ({type(exc).__name__}); give "
                "the file `pht run` wrote"
            ) from None
        if not isinstance(data, dict) or not {"train", "stations"} <= set(data):
            raise ConfigError(
                f"{file}: not a pht result (no 'train' and 'stations'); give the "
                "result.json `pht run` wrote"
            )
        return cls(data)

    @property
    def train(self) -> str:
        """The train that computed it, as ``name@version``."""
        return str(self.data["train"])

    @property
    def partial(self) -> bool:
        """True when fewer stations took part than were requested."""
        record = self.data.get("partial")
        if isinstance(record, Mapping):
            return not record.get("complete", True)
        # results written before schema 3: from the station rows
        return not all(s.get("participated") for s in self.data["stations"])

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Stations that did not take part: station, status, reason, who acts."""
        record = self.data.get("partial")
        if isinstance(record, Mapping):
            return [dict(m) for m in record.get("missing", [])]
        from pht.station.codes import acts

        return [
            {
                "station": s["id"],
                "status": s.get("status"),
                "reason": s.get("reason"),
                "acts": acts(s.get("reason")),
            }
            for s in self.data["stations"]
            if not s.get("participated")
        ]

    @property
    def stations(self) -> pd.DataFrame:
        """One row per requested station: took part, status, reason, who acts."""
        import pandas as pd

        return pd.DataFrame(list(self.data["stations"])).set_index("id")

    @property
    def warnings(self) -> list[dict[str, str]]:
        """Statistical caveats: ``category`` (a warning class name) and ``message``."""
        return [dict(w) for w in self.data.get("warnings", [])]

    def summary(self) -> pd.DataFrame:
        """The main estimates as a pandas DataFrame.

        Cox: one row per coefficient (label, coef, se, hr, ci_lower, ci_upper,
        p_value); Kaplan-Meier: one row per group (n, events, median with its CI,
        RMST).
        """
        frame: pd.DataFrame = _report("summary_frame", self)
        return frame

    def plot_km(self) -> Figure:
        """The Kaplan-Meier curves as a matplotlib Figure."""
        figure: Figure = _report("km_figure", self)
        return figure

    def plot_forest(self) -> Figure:
        """The hazard ratios with their confidence intervals as a matplotlib Figure."""
        figure: Figure = _report("forest_figure", self)
        return figure

    def save(self, out_dir: PathLike) -> tuple[Path, Path]:
        """Write ``result.json`` and ``report.html`` into ``out_dir``; their paths."""
        from pht.orchestrator.run import write_results

        return write_results(self.data, Path(out_dir))

    def __repr__(self) -> str:
        took = sum(1 for s in self.data["stations"] if s.get("participated"))
        asked = len(self.data["stations"])
        flag = ", partial" if self.partial else ""
        return f"Result({self.train}, {took} of {asked} station(s){flag})"


__all__ = ["BUILT", "Network", "Result", "Study", "run"]
