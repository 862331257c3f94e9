"""The ``pht`` command line. The only place errors become messages and exit codes."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from pht import __version__
from pht.errors import PhtError
from pht.orchestrator.engine import RoundProgress
from pht.orchestrator.run import StudyPending

if TYPE_CHECKING:
    from pht.crypto import Identity
from pht.wire import Reply

app = typer.Typer(
    help="pht: Personal Health Train. Send analyses to the data; bring back aggregates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
trains_app = typer.Typer(help="Inspect the train catalogue.", no_args_is_help=True)
app.add_typer(trains_app, name="trains")

# soft_wrap: lines are never broken at 80 columns (paths, JSON and digests stay
# whole when piped or captured); a terminal still wraps them for the eye
console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True, markup=False)  # stdout: verbatim


def _progress(station: str, event: str, detail: Reply | RoundProgress | None) -> None:
    if isinstance(detail, RoundProgress):  # event "round": one line per round
        console.print(
            f"  round {detail.number}: {detail.answered} of {detail.asked} station(s) "
            f"answered ({detail.seconds:.1f} s)"
        )
        return
    reply = detail
    if event == "started":
        console.print(f"  [cyan]{station:<8}[/] running ...")
        return
    if event == "opened" and reply is not None and reply.ok:
        console.print(f"  [green]{station:<8}[/] session open")
        return
    assert reply is not None
    took = f" ({reply.elapsed_seconds:.1f} s)" if reply.elapsed_seconds else ""
    if reply.ok:
        console.print(f"  [green]{station:<8}[/] released a sealed aggregate{took}")
    else:
        colour = "yellow" if reply.status == "refused" else "red"
        console.print(
            f"  [{colour}]{station:<8}[/] {reply.status}: {escape(str(reply.reason))}"
        )


def _check_out_dir(path: Path, option: str = "--out") -> None:
    """Refuse an output folder that cannot be written, before anything runs.

    A run is audited at every station and spends their query budgets: finding out
    afterwards that its results cannot be written would lose it. The check writes
    (and removes) a probe file, creating missing folders only for the probe.
    """
    import contextlib
    import os
    import tempfile

    from pht.errors import ConfigError

    if path.is_symlink() and not path.exists():
        raise ConfigError(
            f"{option} {path}: a link to nothing; remove it or give another folder"
        )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file, not a folder; give a folder")
    for name in ("result.json", "report.html", "pending.json"):
        if (path / name).is_dir():
            raise ConfigError(
                f"{option} {path}: {path / name} is a folder; move it away or give "
                "another folder"
            )
    missing = []
    existing = path
    while not existing.exists():
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{option} {path}: {existing} is a file, so no folder can be made there; "
            "give another path"
        )
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        handle, probe = tempfile.mkstemp(dir=path, prefix=".pht-write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: cannot write there ({exc.strerror}); give a folder "
            "you can write to"
        ) from None
    finally:
        for folder in reversed(created):  # made only for the probe
            with contextlib.suppress(OSError):
                folder.rmdir()


def _run(
    study_path: Path,
    network_path: Path,
    out_dir: Path,
    identity: Path,
    partial_exit: bool = True,
) -> Path:
    from pht import api
    from pht.crypto import load_identity
    from pht.errors import ConfigError

    network = api.Network.load(network_path)
    study = api.Study.load(study_path, network)
    key = load_identity(identity)
    if key.public.role != "requester":  # said before anything is sent
        raise ConfigError(
            f"--identity {identity}: a {key.public.role} key; requests are signed "
            "with your requester key (`pht keys new --role requester`)"
        )
    console.print(
        f"[bold]{study.train}[/] on '{study.config.dataset}' at "
        f"{len(study.config.stations or network.stations)} station(s)"
    )
    if study.config.design is not None:
        for analysis in study.config.design.analyses:
            console.print(
                f"  analysis: {escape(analysis.key)} with "
                f"{analysis.study.train.manifest.ref}",
                soft_wrap=True,
            )
    try:
        result = api.run(study, network, key, progress=_progress)
    except StudyPending as held:
        _held(held, out_dir, key)
    return _write(dict(result.data), out_dir, partial_exit)


def _write(result: dict[str, Any], out_dir: Path, partial_exit: bool = True) -> Path:
    """Write the result; a partial one gets a banner and (``partial_exit``) exit 10."""
    from rich.markup import escape

    from pht.errors import PartialResult
    from pht.orchestrator.run import PENDING_FILE, write_results

    result_path, report_path = write_results(result, out_dir)
    (out_dir / PENDING_FILE).unlink(missing_ok=True)
    out.print(f"result: {result_path}")
    out.print(f"report: {report_path}")
    partial = result.get("partial") or {}
    if not partial.get("complete", True):
        missing = "; ".join(
            f"{m['station']}"
            + (f" in {m['analysis']}" if m.get("analysis") else "")
            + f" {m['status']}: {m['reason']} (acts: {m['acts']})"
            for m in partial["missing"]
        )
        failed = "; ".join(
            f"analysis {f['analysis']} gave no result: {f['error']}"
            for f in partial.get("failed") or []
        )
        missing = "; ".join(part for part in (missing, failed) if part)
        took = (
            "not every station took part in every analysis"
            if partial.get("analyses")
            else f"{partial['took_part']} of {partial['requested']} stations took "
            f"part (min_stations {partial['min_stations']})"
        )
        console.print(
            f"[yellow]partial result:[/] {took}; missing: {escape(missing)}",
            soft_wrap=True,
        )
        if partial_exit:
            raise typer.Exit(PartialResult.exit_code)
    return report_path


def _held(held: StudyPending, out_dir: Path, identity: Identity) -> NoReturn:
    """Save the pending run (signed by the requester) and stop with exit code 9."""
    path = held.pending.save(out_dir, identity)
    console.print(f"[yellow]pending:[/] {escape(str(held))}", soft_wrap=True)
    out.print(f"pending: {path}")
    raise typer.Exit(held.exit_code)


@app.command()
def collect(
    out_dir: Annotated[
        Path, typer.Argument(help="the --out folder of a run held for review")
    ],
    identity: Annotated[
        Path, typer.Option(help="the requester key (.key.json) that signed the run")
    ],
) -> None:
    """Collect outputs approved at manual review; write result.json and report.html."""
    _check_out_dir(out_dir, "DIR")
    from pht.crypto import load_identity
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.engine import make_engine
    from pht.orchestrator.requester import Requester
    from pht.orchestrator.run import PendingRun, collect_study

    PendingRun.file(out_dir)
    key = load_identity(identity)
    pending = PendingRun.load(out_dir, key)
    catalogue = Catalogue()
    network = load_network(pending.network)
    study = load_study(pending.study, catalogue, network)
    requester = Requester(key, {s: e.public_key for s, e in network.stations.items()})
    with make_engine(network, catalogue) as engine:
        try:
            result = collect_study(pending, study, network, engine, requester)
        except StudyPending as held:
            _held(held, out_dir, requester.identity)
    _write(result, out_dir)


@app.command()
def synth(
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for the Parquet files")
    ],
    seed: Annotated[
        int, typer.Option(help="random seed (same seed, same data)")
    ] = 2026,
    patients: Annotated[
        int, typer.Option(help="patients over all three stations", min=30)
    ] = 9000,
    postgres: Annotated[
        Path | None,
        typer.Option(
            help="also load them into PostgreSQL: a file holding an administrator's "
            "DSN (deploy/postgres.sh writes DIR/admin.dsn); tables registry.<station> "
            "and OMOP CDM v5.4 schemas omop_<station>, readable by pht_station"
        ),
    ] = None,
) -> None:
    """Generate synthetic registries: nkr, dica and umc Parquet files (docs/)."""
    _check_out_dir(out_dir)
    from pht import synth as synth_mod

    paths = synth_mod.write(out_dir, seed=seed, patients=patients)
    for station, path in paths.items():
        out.print(f"{station}: {path}")
    if postgres is not None:
        from pht import synth_db

        loaded = synth_db.load_registries(
            synth_db.read_dsn(postgres), seed=seed, patients=patients
        )
        for station, where in loaded.items():
            out.print(
                f"{station}: postgres table {where['table']}, "
                f"omop schema {where['schema']}"
            )


@app.command()
def run(
    study: Annotated[Path, typer.Argument(help="the study.yaml to run")],
    network: Annotated[Path, typer.Option(help="the network.yaml of the stations")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the results")],
    identity: Annotated[
        Path, typer.Option(help="your requester key (.key.json) that signs the request")
    ],
) -> None:
    """Run a study on a network; write result.json and report.html."""
    _check_out_dir(out_dir)
    _run(study, network, out_dir, identity)


@app.command()
def validate(
    study: Annotated[Path, typer.Argument(help="the study.yaml to check")],
    network: Annotated[Path, typer.Option(help="the network.yaml of the stations")],
    identity: Annotated[
        Path | None,
        typer.Option(
            help="your requester key (.key.json): ask the target stations whether "
            "the study's columns, roles, types, train and class are allowed (a "
            "signed, audited describe request; no data, no query budget)"
        ),
    ] = None,
) -> None:
    """Check a study and network file (and, with --identity, against the stations)."""
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.run import budget_use

    catalogue = Catalogue()
    net = load_network(network)
    checked = load_study(study, catalogue, net)
    out.print(f"{study}: files ok ({len(net.stations)} station(s) in {network})")
    budget = budget_use(checked)
    out.print(
        f"budget: {budget['queries_per_station']} query unit(s) per station "
        f"({budget['note']})"
    )
    if identity is None:
        out.print(
            "note: columns not checked at the stations: add --identity KEY to ask "
            "them (a signed, audited describe request)"
        )
        return
    from pht.crypto import load_identity
    from pht.errors import ConfigError
    from pht.orchestrator.discovery import validate_at_stations

    problems, asked = validate_at_stations(
        checked, net, load_identity(identity), catalogue
    )
    for problem in problems:
        console.print(problem.line(study), soft_wrap=True, markup=False)
    if problems:
        everywhere = all(set(p.stations) >= set(asked) for p in problems)
        raise ConfigError(
            f"{study}: {len(problems)} problem(s) at the stations (listed above); "
            + (
                "fix the study"
                if everywhere
                else "fix the study, or leave a station out with 'stations:'"
            )
        )
    out.print(
        f"{study}: ok at {', '.join(asked)} (columns, roles, types, train and "
        "disclosure class allowed)"
    )


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="folder for the demo network and results")
    ] = Path("pht-demo"),
    seed: Annotated[int, typer.Option(help="random seed of the synthetic data")] = 2026,
    patients: Annotated[
        int,
        typer.Option(
            help="patients over all three stations (the demo study needs at least "
            "4000: with fewer, too few registries have enough patients per regimen)",
            min=4000,
        ),
    ] = 9000,
    executor: Annotated[
        str, typer.Option(help="process, or docker (builds the train images first)")
    ] = "process",
    sources: Annotated[
        str,
        typer.Option(
            help="parquet (every station on a Parquet file), or mixed: nkr on "
            "Parquet, dica on a PostgreSQL table, umc on an OMOP CDM cohort (starts "
            "a PostgreSQL server with deploy/postgres.sh)"
        ),
    ] = "parquet",
    engine: Annotated[
        str,
        typer.Option(
            help="embedded (every station in this process), or vantage6: start a "
            "local vantage6 4.15 network (server + one node per station, in "
            "<workdir>/vantage6; needs Docker) and run the study through it"
        ),
    ] = "embedded",
    keep_network: Annotated[
        bool,
        typer.Option(
            help="with --engine vantage6: leave the network running afterwards "
            "(the command that stops it is printed)"
        ),
    ] = False,
) -> None:
    """Create synthetic registries and a network, run the example study, show the report."""
    _check_out_dir(workdir, "--workdir")
    from pht.demo import SOURCES, create_demo
    from pht.errors import ConfigError

    if executor not in ("process", "docker"):
        raise ConfigError(f"--executor must be process or docker, not '{executor}'")
    if sources not in SOURCES:
        raise ConfigError(f"--sources must be {' or '.join(SOURCES)}, not '{sources}'")
    if engine not in ("embedded", "vantage6"):
        raise ConfigError(f"--engine must be embedded or vantage6, not '{engine}'")
    if engine == "vantage6" and (sources != "parquet" or executor != "process"):
        raise ConfigError(
            "--engine vantage6 runs each station inside its node's container: use "
            "it with --sources parquet and --executor process (the defaults)"
        )
    state = workdir / "vantage6"
    if engine == "vantage6" and (state / "network.json").exists():
        from pht.vantage6_local import stop_local_network

        stop_local_network(state)  # an earlier --keep-network: its folder goes
    made = create_demo(
        workdir, seed=seed, patients=patients, executor=executor, sources=sources
    )
    console.print(
        f"demo network in {made.root} (network.yaml, study.yaml, data/, keys/, "
        "trains/, stations/)"
    )
    if engine == "vantage6":
        report = _demo_on_vantage6(made, state, keep_network)
    else:
        # nkr refuses by design (few weight-based patients): a partial result, exit 0
        report = _run(made.study, made.network, made.out, made.identity, False)
    out.print(f"open {report.resolve()} in a browser")
    for name in ("utilisation", "dose", "nma"):
        out.print(
            "next: pht run "
            f"{made.root / f'study-{name}.yaml'} --network {made.network} "
            f"--identity {made.identity} --out {made.root / f'results-{name}'}"
        )


def _demo_on_vantage6(made: Any, state: Path, keep: bool) -> Path:
    """Start the local vantage6 network for the demo, run its study there, stop it."""
    from pht.vantage6_local import start_local_network

    console.print(
        f"starting a local vantage6 network in {state} (server, one node per "
        "station; the first start builds images and a venv: minutes)"
    )
    v6 = start_local_network(made.network, state)
    try:
        console.print(f"vantage6 server {v6.server}; analyst's network {v6.network}")
        # nkr refuses by design (few weight-based patients): a partial result, exit 0
        report = _run(made.study, v6.network, made.out, made.identity, False)
    except BaseException:
        if not keep:
            v6.stop()
        raise
    if keep:
        out.print(f"vantage6 network still running (state and logs: {v6.state})")
        out.print(f"stop it with: {v6.stop_command()}")
    else:
        v6.stop()
        out.print(f"vantage6 network stopped (state and logs kept: {v6.state})")
    return report


@trains_app.command("list")
def trains_list() -> None:
    """List the trains in the catalogue with their versions, digests and plugins."""
    from pht.manifest import Catalogue
    from pht.station.kernels import KERNELS
    from pht.trains import plugins

    registered = plugins()
    for package in Catalogue().packages():
        m = package.manifest
        plugin = registered.get(m.name)
        # what the station releases: its own recomputation, never the train's numbers
        kernel = m.session.kernel if m.session is not None else None
        status = (
            "no plugin: cannot be run"
            if plugin is None
            else "station recomputes"
            if plugin.recompute is not None
            else f"station recomputes (kernel {kernel})"
            if m.rounds == "iterative" and kernel in KERNELS
            else "iterative without a kernel stations know: refused"
            if m.rounds == "iterative"
            else "station recomputes (event tables)"
            if m.output_class == "event_table"
            else "plugin"
        )
        # markup off: rich would take "[event_table, 1, ...]" for a style tag
        out.print(
            f"{m.ref}  [{m.output_class}, {m.rounds}, {status}]  {package.digest}",
            markup=False,
        )
        out.print(f"    {m.description}", markup=False)


keys_app = typer.Typer(
    help="Create identities (signing and sealing keys).", no_args_is_help=True
)
train_app = typer.Typer(
    help="Sign and verify trains (methodologists).", no_args_is_help=True
)
audit_app = typer.Typer(
    help="Verify, query and export station audit logs (auditors).", no_args_is_help=True
)
station_app = typer.Typer(help="Station operator commands.", no_args_is_help=True)
network_app = typer.Typer(
    help="Discover a network: stations, datasets and the columns you may use.",
    no_args_is_help=True,
)
app.add_typer(network_app, name="network")


@network_app.command("show")
def network_show(
    network: Annotated[Path, typer.Argument(help="the network.yaml")],
    identity: Annotated[
        Path | None,
        typer.Option(
            help="your requester key (.key.json): ask every station which columns "
            "you may use (a signed, audited describe request; no data)"
        ),
    ] = None,
    purpose: Annotated[
        str | None, typer.Option(help="your study's purpose (needed with --identity)")
    ] = None,
    role: Annotated[str, typer.Option(help="the role you claim")] = "analyst",
    dataset: Annotated[
        str, typer.Option(help="one dataset id, or * for every one you may use")
    ] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List stations and datasets; with --identity, the columns, roles and rules."""
    import json

    from pht.errors import ConfigError
    from pht.orchestrator.config import load_network
    from pht.orchestrator.discovery import discover, network_document, network_lines

    net = load_network(network)
    answers = None
    if identity is not None:
        if purpose is None:
            raise ConfigError(
                "--identity needs --purpose PURPOSE (your study's purpose): stations "
                "describe only what their policy allows for it"
            )
        from pht.crypto import load_identity

        answers = discover(
            net, load_identity(identity), purpose=purpose, role=role, dataset=dataset
        )
    if as_json:
        document = json.dumps(network_document(net, answers), indent=1)
        out.print(document, soft_wrap=True, markup=False)
    else:
        for line in network_lines(net, answers):
            out.print(line, soft_wrap=True, markup=False)
    if answers is not None and not any(a.ok for a in answers.values()):
        # said on stderr after the listing, so a script sees that nothing answered
        from pht.errors import PolicyError

        raise PolicyError(
            "no station described anything for this key, role and purpose (each "
            "station's line above says why)"
        )


app.add_typer(keys_app, name="keys")
app.add_typer(train_app, name="train")
app.add_typer(audit_app, name="audit")
app.add_typer(station_app, name="station")


@keys_app.command("new")
def keys_new(
    role: Annotated[str, typer.Option(help="requester | methodologist | station")],
    org: Annotated[str, typer.Option(help="your organisation, e.g. ZIN or IKNL")],
    name: Annotated[str, typer.Option(help="a short name, used for the file names")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for the key files")
    ] = Path("keys"),
) -> None:
    """Create an Ed25519 signing key and an X25519 sealing key (private file 0600)."""
    _check_out_dir(out_dir)
    from pht.crypto import new_identity, save_identity

    identity = new_identity(role, org, name)
    private, public = save_identity(identity, out_dir)
    out.print(f"private: {private} (keep it secret; mode 0600)")
    out.print(f"public:  {public} (share it; key id {identity.key_id})")


@train_app.command("sign")
def train_sign(
    train: Annotated[
        Path, typer.Argument(help="the train folder, e.g. train_images/survival.km")
    ],
    key: Annotated[Path, typer.Option(help="your methodologist .key.json")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for the signed statement")
    ],
) -> None:
    """Sign a train's manifest and code digest (DSSE envelope) as a methodologist."""
    _check_out_dir(out_dir)
    import json

    from pht.crypto import load_identity
    from pht.manifest import load_package
    from pht.signing import sign_train

    package = load_package(train)
    envelope = sign_train(package, load_identity(key))
    out_dir.mkdir(parents=True, exist_ok=True)
    m = package.manifest
    path = out_dir / f"{m.name}@{m.version}.dsse.json"
    path.write_text(json.dumps(envelope, indent=1), encoding="utf-8")
    out.print(f"signed {m.ref} ({package.digest}) -> {path}")


@train_app.command("verify")
def train_verify(
    signed: Annotated[Path, typer.Argument(help="a <name>@<version>.dsse.json")],
    keyring: Annotated[Path, typer.Option(help="the keyring.yaml to trust")],
    train: Annotated[
        Path | None, typer.Option(help="also check the digest of this train folder")
    ] = None,
) -> None:
    """Verify a signed train against a keyring (and a train folder's digest)."""
    from pht import yamlcfg
    from pht.errors import ConfigError, TrustError
    from pht.keyring import Keyring
    from pht.manifest import load_package
    from pht.signing import verify_train

    if not signed.is_file():
        what = "is a folder" if signed.is_dir() else "no such file"
        raise ConfigError(
            f"{signed}: {what}; give a signed <name>@<version>.dsse.json "
            "(`pht train sign` writes one)"
        )
    envelope = yamlcfg.load_json(signed)
    if not isinstance(envelope, dict) or not {"payloadType", "signatures"} <= set(
        envelope
    ):
        raise ConfigError(
            f"{signed}: not a signed train (a DSSE envelope with payloadType, payload "
            "and signatures); give the <name>@<version>.dsse.json of `pht train sign`"
        )
    try:
        statement, signer = verify_train(envelope, Keyring.load(keyring))
    except TrustError as exc:
        raise TrustError(f"{signed}: {exc}") from exc
    if train is not None:
        package = load_package(train)
        if package.digest != statement.code_digest:
            raise TrustError(
                f"{train}: code digest {package.digest} differs from the signed "
                f"{statement.code_digest}"
            )
    out.print(
        f"ok: {statement.name}@{statement.version} {statement.code_digest} signed by "
        f"{signer.describe()} at {statement.signed_at}"
    )


@audit_app.command("verify")
def audit_verify(
    log_dir: Annotated[Path, typer.Argument(help="the station's audit folder")],
    public_key: Annotated[Path, typer.Option(help="the station's .pub.json")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="a checkpoint saved earlier (e.g. a copy of the station's "
            "audit.anchor) or a result.json of `pht run`: prove the log only grew since"
        ),
    ] = None,
) -> None:
    """Verify a station's audit log (exit 0 only if intact)."""
    from pht.crypto import load_public
    from pht.station.audit import load_saved, verify_log

    station = load_public(public_key)
    saved = None if checkpoint is None else load_saved(checkpoint, station)
    report = verify_log(log_dir, station.signing_key, saved)
    out.print(f"intact: {report.size} records, root {report.root}", soft_wrap=True)
    if report.format == 1:
        out.print("note: format 1 log; its station converts it when it next starts")
    for problem in report.problems:  # torn tails: reported, not part of the log
        out.print(f"note: {problem}", soft_wrap=True)
    for head in report.extends:
        out.print(f"consistent with {head.source} (size {head.size})", soft_wrap=True)


@audit_app.command("query")
def audit_query(
    log_dir: Annotated[Path, typer.Argument(help="the station's audit folder")],
    requester: Annotated[str | None, typer.Option(help="user or organisation")] = None,
    purpose: Annotated[str | None, typer.Option()] = None,
    train: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    outcome: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="ISO time")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time")] = None,
    export: Annotated[
        Path | None,
        typer.Option(help="write F.csv, F.json or F.jsonl (JSON lines) instead"),
    ] = None,
) -> None:
    """Query a station's audit log; print the records as JSON lines, or export them."""
    from pht.errors import ConfigError
    from pht.station.audit import exporter, query, record_line

    write = None
    if export is not None:
        try:
            write = exporter(export)  # before reading: nothing is written if wrong
        except ConfigError as exc:
            raise ConfigError(f"--export {exc}") from None
    records = query(
        log_dir,
        requester=requester,
        purpose=purpose,
        train=train,
        dataset=dataset,
        outcome=outcome,
        since=since,
        until=until,
    )
    if export is not None and write is not None:
        write(records, export)
        out.print(f"{len(records)} records -> {export}")
        return
    for record in records:  # plain lines: one JSON object each, never wrapped
        sys.stdout.write(record_line(record) + "\n")


@station_app.command("review")
def station_review(
    action: Annotated[str, typer.Argument(help="list | show | approve | reject")],
    network: Annotated[Path, typer.Option(help="the network.yaml")],
    station: Annotated[str, typer.Option(help="the station id")],
    request: Annotated[str | None, typer.Option(help="the request id")] = None,
    reviewer: Annotated[
        str, typer.Option(help="your name, for the audit log")
    ] = "operator",
    reason: Annotated[str, typer.Option(help="why (for reject)")] = "",
) -> None:
    """List, show, approve or reject outputs waiting for manual review."""
    import json

    from pht.errors import ConfigError
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import local_station

    if action not in ("list", "show", "approve", "reject"):
        raise ConfigError(
            f"unknown action '{action}'; use list, show, approve or reject"
        )
    node = local_station(load_network(network), station)
    try:
        if action == "list":
            waiting = node.pending()
            for request_id in waiting:
                out.print(request_id, markup=False)
            if not waiting:
                console.print(
                    f"no outputs wait for review at station {station}", markup=False
                )
            return
        if request is None:
            raise ConfigError(f"`{action}` needs --request ID; see `list`")
        if action == "show":
            out.print(json.dumps(node.show_pending(request), indent=1))
        else:
            reply = node.review(request, action == "approve", reviewer, reason)
            out.print(f"{request}: {reply.status}")
    finally:
        node.close()


@station_app.command("check")
def station_check(
    network: Annotated[Path, typer.Option(help="the network.yaml")],
    station: Annotated[str, typer.Option(help="the station id")],
    dataset: Annotated[
        str | None, typer.Option(help="only this dataset (default: all)")
    ] = None,
) -> None:
    """Per column of each dataset: type, values, missing, allowed (any dataset kind)."""
    from pht.errors import ConfigError, DataError
    from pht.orchestrator.config import load_network
    from pht.station.check import check_station
    from pht.station.policy import load_policy

    net = load_network(network)
    if station not in net.stations:
        known = ", ".join(net.stations)
        raise ConfigError(f"unknown station '{station}'; the network has: {known}")
    host = net.stations[station].hosted()
    if dataset is not None and dataset not in host.datasets:
        known = ", ".join(host.datasets)
        raise ConfigError(
            f"station {station} holds no dataset '{dataset}'; it holds: {known}"
        )
    checks = check_station(
        station,
        {k: d.held() for k, d in host.datasets.items()},
        load_policy(host.policy),
        dataset,
    )
    for check in checks:
        if check.problem is None:
            for line in check.lines():
                out.print(line)
    problems = [c for c in checks if c.problem is not None]
    for check in problems[:-1]:
        console.print(check.lines()[0], markup=False)
    if problems:
        raise DataError(problems[-1].lines()[0])


images_app = typer.Typer(
    help="Build train images offline (station operators).", no_args_is_help=True
)
app.add_typer(images_app, name="images")


@images_app.command("build")
def images_build() -> None:
    """Build the base, runtime and train images offline (idempotent, cached)."""
    from pht.images import build_all

    def progress(step: str, seconds: float | None) -> None:
        if seconds is None:
            console.print(f"  {step} ...", markup=False)
        else:
            console.print(f"  {step}: done ({seconds:.1f} s)", markup=False)

    for ref, image in build_all(progress=progress).items():
        out.print(f"{ref}  {image}", markup=False)


@app.command()
def version() -> None:
    """Print the pht version."""
    out.print(__version__)


NOISY_LOGGERS = ("matplotlib", "PIL", "fontTools", "asyncio", "urllib3", "docker")
"""Third-party loggers kept at WARNING under ``-v`` (pht's own log at DEBUG)."""


def _os_message(exc: OSError) -> str:
    """An operating-system error the library let through, as a located one-liner."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, IsADirectoryError):
        fix = "give a file, not a folder"
    elif isinstance(exc, NotADirectoryError | FileExistsError):
        fix = "a file is in the way of a folder; give another path or move the file"
    elif isinstance(exc, PermissionError):
        fix = "check its permissions (or run as the user who owns it)"
    elif isinstance(exc, FileNotFoundError):
        fix = "check the path"
    else:
        fix = "check the path, the disk and its permissions; -v shows the details"
    return f"{where}: {reason}; {fix}"


@app.command()
def report(
    result: Annotated[
        Path, typer.Argument(help="a result.json written by `pht run` (or its folder)")
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="folder for report.html, figures/, tables/ [default: beside]"
        ),
    ] = None,
) -> None:
    """Re-render report.html, figures (PNG, SVG) and tables (CSV) from a result.json."""
    from pht.orchestrator.exports import load_result, publish_report

    data = load_result(result)
    folder = out_dir or (result if result.is_dir() else result.parent)
    _check_out_dir(folder)
    out.print(f"report: {publish_report(data, folder)}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; ``-v``/``--verbose`` anywhere shows tracebacks and debug logs."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in args)
    args = [a for a in args if a not in ("-v", "--verbose")]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for name in NOISY_LOGGERS:  # -v is about pht, not font caches and sockets
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        code = app(args=args, prog_name="pht", standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(n), returned by click here
            return code
    except PhtError as exc:
        if verbose:
            traceback.print_exc()
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        console.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage: one line, and where to read more
        ctx = getattr(exc, "ctx", None)
        where = f"`{ctx.command_path} --help`" if ctx is not None else "`pht --help`"
        message = " ".join(exc.format_message().split())
        console.print(f"[red]error:[/] {escape(message)} (see {where})", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except OSError as exc:  # a path the library did not check: still one line
        if verbose:
            traceback.print_exc()
        console.print(f"[red]error:[/] {escape(_os_message(exc))}", soft_wrap=True)
        return 1
    except Exception as exc:  # a bug in pht: still one line, the traceback under -v
        if verbose:
            traceback.print_exc()
        text = " ".join(str(exc).split())[:300]
        console.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {escape(text)}; run "
            "again with -v for the traceback and report it",
            soft_wrap=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
