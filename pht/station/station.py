"""A station: answers a :class:`~pht.wire.Request` with a :class:`~pht.wire.Reply`.

The station checks, in order, and refuses with a reason at the first failure:

1. the dataset is one it holds;
2. the train is in its own catalogue and the code digest equals the request's;
3. its policy allows the purpose and the train's disclosure class;
4. the parameters fit the train's manifest and the named columns exist with the
   right kind (numeric, binary, categorical) in the dataset;

then runs the train through its executor and returns the train's aggregate, or the
train's refusal/error reason. A train's stdout, stderr and tracebacks stay in the
station's working folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pht.errors import ConfigError, DataError
from pht.manifest import Catalogue, TrainPackage
from pht.station.executors import Channel, Executor, Job
from pht.station.policy import Policy
from pht.wire import Reply, Request, TrainInput, TrainOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StationConfig:
    """Who a station is and what it holds."""

    id: str
    name: str
    datasets: Mapping[str, Path]
    policy: Policy
    workdir: Path
    executor: str = "process"


def dataset_schema(path: Path) -> pa.Schema:
    """The column types of a Parquet or CSV dataset."""
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_schema(path)
        if suffix == ".csv":
            return pacsv.read_csv(path).schema
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot be read as {suffix[1:]} ({exc})") from None
    raise DataError(f"{path}: format '{suffix}' is not supported; use .parquet or .csv")


def kind_problem(kind: str, dtype: pa.DataType) -> str | None:
    """Why a column of ``dtype`` cannot serve as ``kind``, or None."""
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    if kind == "numeric" and not numeric:
        return f"must be numeric, but has type {dtype}"
    if kind == "binary" and not (numeric or pa.types.is_boolean(dtype)):
        return f"must be 0/1 or boolean, but has type {dtype}"
    if kind == "categorical" and not (
        numeric
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_dictionary(dtype)
    ):
        return f"must be categorical (text, integer or boolean), but has type {dtype}"
    return None


class Station:
    """One data station with its datasets, policy, executor and working folder."""

    def __init__(
        self, config: StationConfig, executor: Executor, catalogue: Catalogue
    ) -> None:
        self.config = config
        self.executor = executor
        self.catalogue = catalogue

    @property
    def id(self) -> str:
        """The station id."""
        return self.config.id

    def _reply(self, request: Request, status: str, reason: str | None, **kw) -> Reply:  # type: ignore[no-untyped-def]
        if status != "ok":
            log.info(
                "station %s %s request %s: %s",
                self.id,
                status,
                request.request_id,
                reason,
            )
        return Reply(
            request_id=request.request_id,
            station=self.id,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            executor=self.executor.name,
            **kw,
        )

    def _check_columns(
        self, package: TrainPackage, request: Request, parameters: Mapping[str, object]
    ) -> str | None:
        path = self.config.datasets[request.dataset]
        schema = dataset_schema(path)
        for column, kind in package.manifest.columns_of(parameters).items():
            index = schema.get_field_index(column)
            if index < 0:
                return (
                    f"dataset '{request.dataset}' has no column '{column}'; "
                    f"available: {', '.join(schema.names)}"
                )
            problem = kind_problem(kind, schema.field(index).type)
            if problem:
                return f"column '{column}' of dataset '{request.dataset}' {problem}"
        return None

    def _admit(self, request: Request) -> tuple[TrainPackage, dict[str, object]] | Reply:
        """Checks 1-4 of the module docstring: the package and parameters, or a Reply."""
        if request.dataset not in self.config.datasets:
            return self._reply(
                request, "refused", f"this station holds no dataset '{request.dataset}'"
            )
        try:
            package = self.catalogue.get(request.train_ref)
        except ConfigError as exc:
            return self._reply(request, "refused", str(exc))
        if package.digest != request.train_digest:
            return self._reply(
                request,
                "refused",
                f"train {request.train} digest mismatch: expected {package.digest}, "
                f"got {request.train_digest}",
            )
        manifest = package.manifest
        parameters, problems = manifest.resolve(request.parameters)
        if problems:
            return self._reply(request, "error", "; ".join(problems))
        refusal = self.config.policy.refusal(
            request.purpose, manifest.output_class_for(parameters)
        )
        if refusal:
            return self._reply(request, "refused", refusal)
        try:
            problem = self._check_columns(package, request, parameters)
        except DataError as exc:
            return self._reply(request, "error", str(exc))
        if problem:
            return self._reply(request, "error", problem)
        return package, parameters

    def handle(self, request: Request) -> Reply:
        """Decide on, run and answer one single-round request. Never raises."""
        admitted = self._admit(request)
        if isinstance(admitted, Reply):
            return admitted
        package, parameters = admitted
        if package.manifest.rounds != "single":
            return self._reply(
                request, "error", f"train {request.train} is iterative; open a session"
            )
        return self._run(request, package, parameters)

    def _prepare(
        self, request: Request, package: TrainPackage, parameters: Mapping[str, object]
    ) -> Job:
        manifest = package.manifest
        run_dir = self.config.workdir / "runs" / request.request_id
        if run_dir.exists():
            shutil.rmtree(run_dir)
        (run_dir / "output").mkdir(parents=True)
        train_input = TrainInput(
            request_id=request.request_id,
            train=str(manifest.ref),
            parameters=dict(parameters),
            columns=tuple(manifest.columns_of(parameters)),
            min_count=self.config.policy.min_cell_size,
        )
        input_file = run_dir / "input.json"
        input_file.write_text(train_input.to_json(), encoding="utf-8")
        return Job(
            entrypoint=package.entrypoint,
            input_file=input_file,
            dataset=self.config.datasets[request.dataset],
            output_dir=run_dir / "output",
            workdir=run_dir,
        )

    def open_session(self, request: Request) -> tuple[Reply, StationSession | None]:
        """Admit an iterative request and start its train; the reply to round 0."""
        admitted = self._admit(request)
        if isinstance(admitted, Reply):
            return admitted, None
        package, parameters = admitted
        if package.manifest.rounds != "iterative":
            return self._reply(
                request, "error", f"train {request.train} is single-round"
            ), None
        channel = self.executor.start(self._prepare(request, package, parameters))
        session = StationSession(self, request, package, parameters, channel)
        reply = session.receive()
        if not reply.ok:
            session.close()
            return reply, None
        return reply, session

    def _run(
        self, request: Request, package: TrainPackage, parameters: Mapping[str, object]
    ) -> Reply:
        manifest = package.manifest
        result = self.executor.run(self._prepare(request, package, parameters))
        common = {
            "disclosure_class": manifest.output_class_for(parameters),
            "train_digest": package.digest,
            "elapsed_seconds": round(result.elapsed_seconds, 3),
        }
        if result.timed_out:
            return self._reply(request, "error", "the train timed out", **common)
        if result.output is None:
            log.warning(
                "station %s: train wrote no output; stderr: %s",
                self.id,
                result.stderr_tail,
            )
            return self._reply(
                request, "error", "the train wrote no valid output", **common
            )
        return self._released(request, result.output, common)

    def _released(
        self, request: Request, raw: bytes, common: Mapping[str, object]
    ) -> Reply:
        try:
            output = TrainOutput.from_json(raw)
        except ConfigError as exc:
            return self._reply(
                request, "error", f"the train broke its contract: {exc}", **common
            )
        if output.status != "ok":
            return self._reply(request, output.status, output.reason, **common)
        return self._reply(request, "ok", None, output=output.output, **common)


class StationSession:
    """A running iterative train at a station: rounds are messages to one process."""

    def __init__(
        self,
        station: Station,
        request: Request,
        package: TrainPackage,
        parameters: Mapping[str, object],
        channel: Channel,
    ) -> None:
        self.station = station
        self.request = request
        self.package = package
        self.parameters = parameters
        self.channel = channel
        self.rounds = 0
        self.closed = False

    def receive(self, timeout: float = 600.0) -> Reply:
        """Read the train's answer to the latest message."""
        started = time.monotonic()
        raw = self.channel.receive(timeout)
        common = {
            "disclosure_class": self.package.manifest.output_class_for(self.parameters),
            "train_digest": self.package.digest,
            "elapsed_seconds": round(time.monotonic() - started, 3),
        }
        if raw is None:
            tail = self.close()
            log.warning("station %s: session ended; stderr: %s", self.station.id, tail)
            return self.station._reply(
                self.request, "error", "the train stopped answering", **common
            )
        return self.station._released(self.request, raw, common)

    def round(self, message: Mapping[str, object]) -> Reply:
        """Send one round message and return the train's released answer."""
        if self.closed:
            return self.station._reply(self.request, "error", "the session is closed")
        self.rounds += 1
        self.channel.send(json.dumps(dict(message), allow_nan=False).encode("utf-8"))
        return self.receive()

    def close(self) -> str:
        """End the session; return the train's stderr tail (station log only)."""
        if self.closed:
            return ""
        self.closed = True
        return self.channel.close()
