"""The ``pht`` command line. The only place errors become messages and exit codes."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pht import __version__
from pht.errors import PhtError
from pht.wire import Reply

app = typer.Typer(
    help="pht: Personal Health Train. Send analyses to the data; bring back aggregates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
trains_app = typer.Typer(help="Inspect the train catalogue.", no_args_is_help=True)
app.add_typer(trains_app, name="trains")

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _progress(station: str, event: str, reply: Reply | None) -> None:
    if event == "started":
        console.print(f"  [cyan]{station:<8}[/] running ...")
        return
    if event == "opened" and reply is not None and reply.ok:
        n = (reply.output or {}).get("n")
        console.print(f"  [green]{station:<8}[/] session open, n={n}")
        return
    assert reply is not None
    took = f" ({reply.elapsed_seconds:.1f} s)" if reply.elapsed_seconds else ""
    if reply.ok:
        n = (reply.output or {}).get("n")
        console.print(f"  [green]{station:<8}[/] released aggregate, n={n}{took}")
    else:
        colour = "yellow" if reply.status == "refused" else "red"
        console.print(f"  [{colour}]{station:<8}[/] {reply.status}: {reply.reason}")


def _run(study_path: Path, network_path: Path, out_dir: Path) -> Path:
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network, load_study
    from pht.orchestrator.engine import EmbeddedEngine
    from pht.orchestrator.run import run_study, write_results

    catalogue = Catalogue()
    network = load_network(network_path)
    study = load_study(study_path, catalogue, network)
    console.print(
        f"[bold]{study.train.manifest.ref}[/] on '{study.dataset}' at "
        f"{len(study.stations or network.stations)} station(s)"
    )
    engine = EmbeddedEngine(network, catalogue)
    result = run_study(study, network, engine, progress=_progress)
    result_path, report_path = write_results(result, out_dir)
    out.print(f"result: {result_path}")
    out.print(f"report: {report_path}")
    return report_path


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
) -> None:
    """Generate synthetic registries: nkr, dica and umc Parquet files (docs/)."""
    from pht import synth as synth_mod

    paths = synth_mod.write(out_dir, seed=seed, patients=patients)
    for station, path in paths.items():
        out.print(f"{station}: {path}")


@app.command()
def run(
    study: Annotated[Path, typer.Argument(help="the study.yaml to run")],
    network: Annotated[Path, typer.Option(help="the network.yaml of the stations")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the results")],
) -> None:
    """Run a study on a network; write result.json and report.html."""
    _run(study, network, out_dir)


@app.command()
def validate(
    study: Annotated[Path, typer.Argument(help="the study.yaml to check")],
    network: Annotated[Path, typer.Option(help="the network.yaml of the stations")],
) -> None:
    """Check a study and network file without running anything."""
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network, load_study

    catalogue = Catalogue()
    net = load_network(network)
    load_study(study, catalogue, net)
    out.print(f"{study}: ok ({len(net.stations)} station(s) in {network})")


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="folder for the demo network and results")
    ] = Path("pht-demo"),
    seed: Annotated[int, typer.Option(help="random seed of the synthetic data")] = 2026,
    patients: Annotated[
        int, typer.Option(help="patients over all three stations", min=30)
    ] = 9000,
) -> None:
    """Create synthetic registries and a network, run the example study, show the report."""
    from pht.demo import create_demo

    made = create_demo(workdir, seed=seed, patients=patients)
    console.print(f"demo network in {made.root} (network.yaml, study.yaml, data/)")
    report = _run(made.study, made.network, made.out)
    out.print(f"open {report.resolve()} in a browser")


@trains_app.command("list")
def trains_list() -> None:
    """List the trains in the catalogue with their versions and digests."""
    from pht.manifest import Catalogue

    for package in Catalogue().packages():
        m = package.manifest
        out.print(f"{m.ref}  [{m.output_class}, {m.rounds}]  {package.digest}")
        out.print(f"    {m.description}")


@app.command()
def version() -> None:
    """Print the pht version."""
    out.print(__version__)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; ``-v``/``--verbose`` anywhere shows tracebacks and debug logs."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in args)
    args = [a for a in args if a not in ("-v", "--verbose")]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        app(args=args, prog_name="pht", standalone_mode=False)
    except PhtError as exc:
        if verbose:
            traceback.print_exc()
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        console.print("aborted")
        return 130
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            console.print(f"[red]error:[/] {exc.format_message()}")
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
