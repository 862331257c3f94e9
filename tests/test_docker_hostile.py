"""Hostile train images against the Docker executor: one fixture per attack.

Each attack is an image a methodologist with a trusted key could sign, built offline
FROM the project's runtime (or the genuine train image) in a second or two. The image
check (:mod:`pht.station.image_check`) must refuse it before any container exists, or
the container must contain it; nothing may stay behind (``docker ps -a``,
``docker volume ls``). Trains whose code *is* what the station verified (built by
``pht.images.train_image`` from a scratch catalogue) show containment of the output and
the mounts. The tar and config rules are also tested without Docker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import tarfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pht.manifest import TRAINS_DIR, TrainPackage, load_package
from pht.station import docker_executor, image_check
from pht.station.executors import Job, Limits
from pht.station.image_check import (
    ImageRefused,
    TrainImageCheck,
    UnsafeSkipCodeCheck,
    check_train_layer,
    tar_entries,
)

REASON = docker_executor.available()
if REASON and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the container tests, but: {REASON}")

PREFIX = "pht/test-hostile"
ENTRY = '["/opt/venv/bin/python", "-I", "/opt/train/entrypoint.py"]'
SITE = "opt/venv/lib/python3.11/site-packages"
SCRATCH: list[str] = []  # scratch train images, removed with the scene


def needs_docker(test: Any) -> Any:
    """Mark a test as needing the engine (skipped without one, fatal under CI)."""
    skip = pytest.mark.skipif(REASON is not None, reason=f"no Docker engine: {REASON}")
    return pytest.mark.docker(skip(test))


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def build(context: Path, name: str, dockerfile: str, *labels: str) -> str:
    """``docker build --network none`` of a tiny context; the image ID."""
    (context / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    tag = f"{PREFIX}-{name}:latest"
    label_args = [a for label in labels for a in ("--label", label)]
    docker("build", "--network", "none", "-q", *label_args, "-t", tag, str(context))
    return docker("image", "inspect", "-f", "{{.Id}}", tag)


def layer_tar(entries: list[tuple[str, str, bytes]]) -> bytes:
    """A layer tar of (name, kind, data): kind is dir, file, symlink, link or fifo."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
            info.type = {
                "dir": tarfile.DIRTYPE,
                "file": tarfile.REGTYPE,
                "symlink": tarfile.SYMTYPE,
                "link": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("symlink", "link"):
                info.linkname = data.decode()
                data = b""
            info.size = len(data) if kind == "file" else 0
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return out.getvalue()


def load_crafted(base: str, name: str, top: bytes) -> str:
    """Load an image: ``base`` with its top layer replaced by the tar ``top``.

    ``docker load`` takes layers the engine already holds by their digest, so the
    archive carries only the new layer and the config (a few kB).
    """
    attrs = json.loads(docker("image", "inspect", base))[0]
    layers = attrs["RootFS"]["Layers"][:-1] + [
        "sha256:" + hashlib.sha256(top).hexdigest()
    ]
    config = {
        "architecture": attrs["Architecture"],
        "os": attrs["Os"],
        "config": attrs["Config"],
        "rootfs": {"type": "layers", "diff_ids": layers},
    }
    raw = json.dumps(config).encode()
    config_name = hashlib.sha256(raw).hexdigest() + ".json"
    tag = f"{PREFIX}-{name}:latest"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [tag],
            "Layers": [f"l{i}/layer.tar" for i in range(len(layers) - 1)]
            + ["top/layer.tar"],
        }
    ]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for member, data in (
            (config_name, raw),
            ("manifest.json", json.dumps(manifest).encode()),
            ("top/layer.tar", top),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(
        ["docker", "load", "-q"],
        input=archive.getvalue(),
        check=True,
        capture_output=True,
    )
    return docker("image", "inspect", "-f", "{{.Id}}", tag)


def train_files(package: TrainPackage) -> list[tuple[str, str, bytes]]:
    return [
        ("opt/", "dir", b""),
        ("opt/train/", "dir", b""),
        ("opt/train/manifest.yaml", "file", package.manifest_bytes),
        ("opt/train/entrypoint.py", "file", package.entrypoint.read_bytes()),
    ]


# -- the scene: runtime, the genuine train (a snapshot), scratch trains ----------------
@pytest.fixture(scope="module")
def runtime() -> str:
    """The trusted runtime's image ID (built offline, recorded as trusted)."""
    from pht.images import engine_and_base, runtime_image

    engine_and_base()
    return docker("image", "inspect", "-f", "{{.Id}}", runtime_image())


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("hostile")
    yield root
    tags = docker("images", "--format", "{{.Repository}}:{{.Tag}}", PREFIX + "-*")
    for image in [*tags.split(), *SCRATCH]:
        docker("rmi", "-f", image, check=False)


@pytest.fixture(scope="module")
def genuine(scene: Path, runtime: str) -> tuple[TrainPackage, str]:
    """survival.km as the station holds it, and its honestly built image.

    A snapshot of the train folder, so edits to train_images/ during the run do not
    change what the station verifies.
    """
    from pht.images import train_image

    folder = scene / "catalogue" / "survival.km"
    shutil.copytree(TRAINS_DIR / "survival.km", folder)
    package = load_package(folder)
    # the project's own survival.km image when the folder is unchanged: kept
    return package, train_image(package, f"pht/train-runtime:{_tag_of(runtime)}")


def _tag_of(image: str) -> str:
    tags = json.loads(docker("image", "inspect", "-f", "{{json .RepoTags}}", image))
    return next(t for t in tags if t.startswith("pht/train-runtime:")).split(":")[1]


def scratch_train(
    scene: Path, runtime: str, name: str, script: str
) -> tuple[TrainPackage, str]:
    """A train whose code is ``script``, honestly built: the check lets it run."""
    from pht.images import train_image

    km = TRAINS_DIR / "survival.km"
    folder = scene / "catalogue" / f"evil.{name}"
    folder.mkdir(parents=True)
    manifest = (km / "manifest.yaml").read_text()
    (folder / "manifest.yaml").write_text(
        manifest.replace("name: survival.km", f"name: evil.{name}")
    )
    (folder / "entrypoint.py").write_text(textwrap.dedent(script))
    (folder / "Dockerfile").write_text((km / "Dockerfile").read_text())
    package = load_package(folder)
    image = train_image(package, f"pht/train-runtime:{_tag_of(runtime)}")
    SCRATCH.append(image)
    return package, image


def executor(runtime: str, **check: Any) -> docker_executor.DockerExecutor:
    return docker_executor.DockerExecutor(
        docker_executor.ContainerLimits(memory="256m"),
        TrainImageCheck(runtimes=[runtime], **check),
    )


def job_for(
    tmp_path: Path, image: str, package: TrainPackage, timeout: float = 20.0
) -> Job:
    """A job as the station prepares it, with a per-run extract only root can read."""
    workdir = tmp_path / f"hostile-{uuid.uuid4().hex[:12]}"
    (workdir / "output").mkdir(parents=True)
    (workdir / "input.json").write_text("{}")
    extract = workdir / "dataset.parquet"
    pd.DataFrame({"os_days": [1.0, 2.0, 3.0], "death": [1, 0, 1]}).to_parquet(extract)
    os.chmod(extract, 0o600)
    return Job(
        entrypoint=package.entrypoint,
        input_file=workdir / "input.json",
        dataset=extract,
        output_dir=workdir / "output",
        workdir=workdir,
        limits=Limits(timeout_seconds=timeout, output_bytes=1024**2),
        image=image,
    )


@pytest.fixture(autouse=True)
def nothing_stays_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every Docker test: no job container of ours, no new volume."""
    if REASON is not None or "docker" not in request.keywords:
        yield
        return
    volumes = set(docker("volume", "ls", "-q").split())
    yield
    left = docker("ps", "-aq", "--filter", "label=org.pht.job").split()
    ours = [
        c
        for c in left
        if docker(
            "inspect", "-f", '{{index .Config.Labels "org.pht.job"}}', c
        ).startswith("hostile-")
    ]
    assert ours == [], "containers left behind"
    assert set(docker("volume", "ls", "-q").split()) - volumes == set(), "volume left"


# -- finding 2: the image must be the verified code on the trusted runtime ------------
@pytest.fixture(scope="module")
def code_swap(scene: Path, runtime: str, genuine: tuple[TrainPackage, str]) -> str:
    """The genuine manifest with a row-dumping entrypoint, labelled as genuine."""
    package, _ = genuine
    context = scene / "code-swap"
    context.mkdir()
    (context / "manifest.yaml").write_bytes(package.manifest_bytes)
    (context / "entrypoint.py").write_text(
        "import json, os, sys, pandas as pd\nargs = sys.argv\n"
        "rows = pd.read_parquet(args[args.index('--data') + 1]).to_dict('records')\n"
        "out = os.path.join(args[args.index('--output') + 1], 'output.json')\n"
        "json.dump({'status': 'ok', 'output': {'rows': rows}}, open(out, 'w'))\n"
    )
    return build(
        context,
        "code-swap",
        f"""\
        FROM {runtime}
        COPY manifest.yaml entrypoint.py /opt/train/
        USER 10001:10001
        ENTRYPOINT {ENTRY}
        """,
        f"org.pht.train={package.manifest.ref}",
        f"org.pht.code_digest={package.digest}",
    )


@pytest.fixture(scope="module")
def pth_in_train_layer(
    scene: Path, runtime: str, genuine: tuple[TrainPackage, str]
) -> str:
    """Genuine train files plus a site-packages .pth hook, in the same one layer."""
    package, _ = genuine
    context = scene / "pth"
    train = context / "rootfs" / "opt" / "train"
    train.mkdir(parents=True)
    (train / "manifest.yaml").write_bytes(package.manifest_bytes)
    (train / "entrypoint.py").write_bytes(package.entrypoint.read_bytes())
    site = context / "rootfs" / SITE
    site.mkdir(parents=True)
    (site / "zz_hook.pth").write_text("import os; os.environ['HOOKED'] = '1'\n")
    return build(
        context,
        "pth",
        f"""\
        FROM {runtime}
        COPY rootfs/ /
        USER 10001:10001
        ENTRYPOINT {ENTRY}
        """,
        f"org.pht.train={package.manifest.ref}",
        f"org.pht.code_digest={package.digest}",
    )


@pytest.fixture(scope="module")
def runtime_swap(scene: Path, genuine: tuple[TrainPackage, str]) -> str:
    """The genuine image plus a layer replacing pht/runtime.py (the train's I/O)."""
    _, image = genuine
    context = scene / "runtime-swap"
    context.mkdir()
    (context / "runtime.py").write_text("def run_train(local):\n    return 0\n")
    return build(
        context,
        "runtime-swap",
        f"""\
        FROM {image}
        USER 0:0
        COPY runtime.py /{SITE}/pht/runtime.py
        USER 10001:10001
        """,
    )


@pytest.fixture(scope="module")
def foreign_base(scene: Path, genuine: tuple[TrainPackage, str]) -> str:
    """The genuine train files on the bare base image instead of the runtime."""
    from pht.images import BASE_IMAGE

    package, _ = genuine
    context = scene / "foreign-base"
    context.mkdir()
    (context / "manifest.yaml").write_bytes(package.manifest_bytes)
    (context / "entrypoint.py").write_bytes(package.entrypoint.read_bytes())
    return build(
        context,
        "foreign-base",
        f"""\
        FROM {BASE_IMAGE}
        COPY manifest.yaml entrypoint.py /opt/train/
        USER 10001:10001
        ENTRYPOINT {ENTRY}
        """,
        f"org.pht.train={package.manifest.ref}",
        f"org.pht.code_digest={package.digest}",
    )


@pytest.fixture(scope="module")
def whiteout(genuine: tuple[TrainPackage, str]) -> str:
    """Genuine train files, and a whiteout deleting the pht package (crafted layer)."""
    package, image = genuine
    top = layer_tar([*train_files(package), (f"{SITE}/.wh.pht", "file", b"")])
    return load_crafted(image, "whiteout", top)


@pytest.fixture(scope="module")
def opaque_dir(genuine: tuple[TrainPackage, str]) -> str:
    """Genuine train files, and an opaque /opt hiding the runtime's /opt/venv."""
    package, image = genuine
    top = layer_tar([*train_files(package), ("opt/.wh..wh..opq", "file", b"")])
    return load_crafted(image, "opaque", top)


@pytest.fixture(scope="module")
def symlinked_entrypoint(genuine: tuple[TrainPackage, str]) -> str:
    """The entrypoint as a symlink into the runtime (crafted layer)."""
    package, image = genuine
    files = train_files(package)[:3]
    top = layer_tar([*files, ("opt/train/entrypoint.py", "symlink", b"/tmp/x.py")])
    return load_crafted(image, "symlink", top)


CONFIG_ATTACKS = {
    "volume": "VOLUME /keep",
    "entrypoint": 'ENTRYPOINT ["/opt/venv/bin/python", "-c", "print(1)"]',
    "cmd": 'CMD ["--data", "/etc/passwd"]',
    "user": "USER 0:0",
    "onbuild": "ONBUILD RUN true",
    "env": "ENV LD_PRELOAD=/tmp/hook.so",
    "label": "LABEL org.pht.reviewed=yes",
    "healthcheck": 'HEALTHCHECK CMD ["/opt/venv/bin/python", "-c", "0"]',
    "workdir": "WORKDIR /tmp",
}


@pytest.fixture(scope="module", params=sorted(CONFIG_ATTACKS))
def config_attack(
    request: pytest.FixtureRequest, scene: Path, genuine: tuple[TrainPackage, str]
) -> tuple[str, str]:
    """The genuine image with one config instruction added (no new layer)."""
    _, image = genuine
    name = request.param
    context = scene / f"config-{name}"
    context.mkdir()
    return name, build(
        context, f"config-{name}", f"FROM {image}\n{CONFIG_ATTACKS[name]}\n"
    )


def refused(image: str, package: TrainPackage, runtime: str, tmp_path: Path) -> str:
    """Run the image through the executor; it must be refused: the reason."""
    job = job_for(tmp_path, image, package)
    with pytest.raises(ImageRefused) as caught:
        executor(runtime).run(job)
    assert docker_executor.read_output_file(job.output_dir, 1024) is None
    return str(caught.value)


@needs_docker
def test_honest_train_images_pass_the_image_check() -> None:
    """Every image `pht images build` makes passes, checked against the catalogue
    with the default trust (the runtimes recorded by the build)."""
    import docker as sdk

    from pht.images import build_all
    from pht.manifest import Catalogue

    built = build_all()
    client = sdk.from_env()
    packages = [p for p in Catalogue().packages() if str(p.manifest.ref) in built]
    assert {p.manifest.name for p in packages} >= {"survival.km", "survival.cox"}
    for package in packages:
        image = built[str(package.manifest.ref)]
        image_check.forget_verdicts()
        job = Job(package.entrypoint, Path("-"), Path("-"), Path("-"), Path("-"))
        TrainImageCheck().verify(client, client.images.get(image).attrs, job)


@needs_docker
def test_genuine_train_runs_and_its_verdict_is_cached(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str]
) -> None:
    package, image = genuine
    image_check.forget_verdicts()
    run = executor(runtime)
    for _ in range(2):
        result = run.run(job_for(tmp_path, image, package))
        assert result.returncode is not None and not result.timed_out
    assert len(image_check._VERIFIED) == 1


@needs_docker
def test_swapped_code_under_the_genuine_digest_is_refused(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str], code_swap: str
) -> None:
    package, _ = genuine
    # the attack is real: unchecked, the image runs its own code and dumps the rows
    unchecked = docker_executor.DockerExecutor(image_check=UnsafeSkipCodeCheck())
    dumped = unchecked.run(job_for(tmp_path, code_swap, package)).output
    assert dumped is not None and len(json.loads(dumped)["output"]["rows"]) == 3
    reason = refused(code_swap, package, runtime, tmp_path)
    assert "the train code in the image has digest" in reason
    assert package.digest in reason


@needs_docker
def test_a_hook_beside_the_genuine_code_in_its_layer_is_refused(
    tmp_path: Path,
    runtime: str,
    genuine: tuple[TrainPackage, str],
    pth_in_train_layer: str,
) -> None:
    reason = refused(pth_in_train_layer, genuine[0], runtime, tmp_path)
    assert "its train layer holds 'opt/venv" in reason


@needs_docker
def test_a_swapped_runtime_layer_is_refused(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str], runtime_swap: str
) -> None:
    reason = refused(runtime_swap, genuine[0], runtime, tmp_path)
    assert "2 layers on top of the trusted runtime" in reason


@needs_docker
def test_an_image_not_built_on_the_trusted_runtime_is_refused(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str], foreign_base: str
) -> None:
    reason = refused(foreign_base, genuine[0], runtime, tmp_path)
    assert "not built on the trusted runtime" in reason


@needs_docker
def test_a_whiteout_in_the_train_layer_is_refused(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str], whiteout: str
) -> None:
    reason = refused(whiteout, genuine[0], runtime, tmp_path)
    assert "deletes files" in reason


@needs_docker
def test_an_opaque_directory_in_the_train_layer_is_refused(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str], opaque_dir: str
) -> None:
    reason = refused(opaque_dir, genuine[0], runtime, tmp_path)
    assert "'opt' in its train layer has extended attributes" in reason


@needs_docker
def test_a_symlinked_entrypoint_is_refused(
    tmp_path: Path,
    runtime: str,
    genuine: tuple[TrainPackage, str],
    symlinked_entrypoint: str,
) -> None:
    reason = refused(symlinked_entrypoint, genuine[0], runtime, tmp_path)
    assert "'opt/train/entrypoint.py' (symlink)" in reason


@needs_docker
def test_config_other_than_the_build_makes_is_refused(
    tmp_path: Path,
    runtime: str,
    genuine: tuple[TrainPackage, str],
    config_attack: tuple[str, str],
) -> None:
    name, image = config_attack
    reason = refused(image, genuine[0], runtime, tmp_path)
    expected = {
        "volume": "declares volumes",
        "entrypoint": "its Entrypoint is not",
        "cmd": "sets 'Cmd'",
        "user": "its User is not",
        "onbuild": "sets 'OnBuild'",
        "env": "its Env is not",
        "label": "labels differ from the expected ones: 'org.pht.reviewed'",
        "healthcheck": "sets 'Healthcheck'",
        "workdir": "its WorkingDir is not",
    }[name]
    assert expected in reason


@needs_docker
def test_the_save_reader_agrees_with_the_overlay_reader(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str], whiteout: str
) -> None:
    """`docker save` (any engine) passes the genuine image, refuses the whiteout."""
    package, image = genuine
    image_check.forget_verdicts()
    executor(runtime, reader="save").run(job_for(tmp_path, image, package))
    job = job_for(tmp_path, whiteout, package)
    with pytest.raises(ImageRefused, match="deletes files"):
        executor(runtime, reader="save").run(job)


@needs_docker
def test_an_untrusted_runtime_means_no_train_runs(
    tmp_path: Path, genuine: tuple[TrainPackage, str]
) -> None:
    package, image = genuine
    job = job_for(tmp_path, image, package)
    with pytest.raises(ImageRefused, match="no trusted runtime image is loaded"):
        docker_executor.DockerExecutor(
            image_check=TrainImageCheck(runtimes=["sha256:" + "0" * 64])
        ).run(job)


@needs_docker
def test_a_station_refuses_swapped_code_signed_with_the_genuine_digest(
    tmp_path: Path,
    genuine: tuple[TrainPackage, str],
    code_swap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """End to end: the signed statement names the hostile image and the genuine code
    digest; the station verifies the digest, the executor refuses the image."""
    from pht.crypto import load_identity
    from pht.manifest import Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import EmbeddedEngine
    from pht.orchestrator.requester import Requester, signed_train
    from pht.provision import policy_document, provision

    package, _ = genuine
    catalogue = Catalogue(package.folder.parent)
    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "s1.parquet"
    pd.DataFrame({"os_days": [1.0, 2.0] * 20, "death": [1, 0] * 20}).to_parquet(data)
    made = provision(
        tmp_path,
        {"s1": {"melanoma": data}},
        executor="docker",
        images={str(package.manifest.ref): code_swap},
        catalogue=catalogue,
        policy=policy_document(columns=["os_days", "death"]),
    )
    net = load_network(made.network)
    station = EmbeddedEngine(net, catalogue).station("s1")
    requester = Requester(
        load_identity(made.requester_key),
        {s: e.public_key for s, e in net.stations.items()},
    )
    _, envelope = requester.request(
        role="analyst",
        purpose="package-management/reassessment",
        train=str(package.manifest.ref),
        train_digest=package.digest,
        train_envelope=signed_train(net.trains, package),
        dataset="melanoma",
        parameters={"time": "os_days", "event": "death"},
        targets=["s1"],
    )
    with caplog.at_level(logging.WARNING):
        reply = station.handle(envelope)
    assert reply.status == "error" and reply.sealed is None
    # the requester gets a fixed reason; the station's log says why
    assert "train image refused: the train code in the image has digest" in caplog.text


# -- finding 3: volumes -------------------------------------------------------------
@pytest.fixture(scope="module")
def volume_image(scene: Path, genuine: tuple[TrainPackage, str]) -> str:
    """The genuine image declaring a VOLUME where a train could park rows."""
    _, image = genuine
    context = scene / "volume"
    context.mkdir()
    return build(context, "volume", f"FROM {image}\nVOLUME /home/train/keep\n")


@needs_docker
def test_an_image_declaring_a_volume_is_refused_before_any_container(
    tmp_path: Path, runtime: str, genuine: tuple[TrainPackage, str], volume_image: str
) -> None:
    package, _ = genuine
    for check in (TrainImageCheck(runtimes=[runtime]), UnsafeSkipCodeCheck()):
        job = job_for(tmp_path, volume_image, package)
        with pytest.raises(Exception, match="declares volumes"):
            docker_executor.DockerExecutor(image_check=check).run(job)
        with pytest.raises(Exception, match="declares volumes"):
            docker_executor.DockerExecutor(image_check=check).start(job)
    created = docker("ps", "-aq", "--filter", f"ancestor={volume_image}")
    assert created == ""


@needs_docker
def test_removal_takes_anonymous_volumes_with_the_container(volume_image: str) -> None:
    """Defence in depth: were a volume ever created, removal deletes it too."""
    import docker as sdk

    api = sdk.from_env().api
    container = api.create_container(
        volume_image, labels={"org.pht.job": f"hostile-{uuid.uuid4().hex[:8]}"}
    )["Id"]
    volume = api.inspect_container(container)["Mounts"][0]["Name"]
    assert volume in docker("volume", "ls", "-q").split()
    docker_executor.DockerExecutor()._remove(container)
    assert volume not in docker("volume", "ls", "-q").split()


# -- finding 4: output.json must be a regular file -------------------------------------
OUTPUT_ATTACKS = {
    "fifo": "os.mkfifo(target)",
    "directory": "os.mkdir(target)",
    "socket": "socket.socket(socket.AF_UNIX).bind(target)",
    "symlink": "os.symlink(args[args.index('--data') + 1], target)",
}


@pytest.fixture(scope="module", params=sorted(OUTPUT_ATTACKS))
def output_attack(
    request: pytest.FixtureRequest, scene: Path, runtime: str
) -> tuple[TrainPackage, str]:
    """A train (honestly built) whose output.json is not a regular file."""
    return scratch_train(
        scene,
        runtime,
        f"output{request.param}",
        "import os, socket, sys\nargs = sys.argv\n"
        "target = os.path.join(args[args.index('--output') + 1], 'output.json')\n"
        f"{OUTPUT_ATTACKS[request.param]}\n",
    )


@needs_docker
def test_an_output_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, runtime: str, output_attack: tuple[TrainPackage, str]
) -> None:
    package, image = output_attack
    started = time.monotonic()
    result = executor(runtime).run(job_for(tmp_path, image, package, timeout=30))
    assert result.returncode == 0 and not result.timed_out
    assert result.output is None
    assert time.monotonic() - started < 25


def test_read_output_file_takes_only_regular_files(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "output.json"
    os.mkfifo(target)  # no writer: a blocking open would hang here
    assert docker_executor.read_output_file(folder, 100) is None
    target.unlink()
    target.mkdir()
    assert docker_executor.read_output_file(folder, 100) is None
    target.rmdir()
    (tmp_path / "secret").write_text("x")
    target.symlink_to(tmp_path / "secret")
    assert docker_executor.read_output_file(folder, 100) is None
    target.unlink()
    target.write_bytes(b"x" * 101)
    assert docker_executor.read_output_file(folder, 100) is None
    target.write_bytes(b'{"status": "ok"}')
    assert docker_executor.read_output_file(folder, 100) == b'{"status": "ok"}'
    assert docker_executor.read_output_file(tmp_path / "missing", 100) is None


# -- finding 1: the container sees the extract and nothing else of the station's ------
@pytest.fixture(scope="module")
def mount_probe(scene: Path, runtime: str) -> tuple[TrainPackage, str]:
    """A train reporting its mounts, groups, /data and /input, and what it can read."""
    return scratch_train(
        scene,
        runtime,
        "mounts",
        """\
        import json, os, sys
        args = sys.argv
        out = args[args.index("--output") + 1]
        mounts = [line.split()[3:6] for line in open("/proc/self/mountinfo")]
        facts = {
            "mounts": mounts,
            "data": sorted(os.listdir("/data")),
            "input": sorted(os.listdir("/input")),
            "groups": sorted(set(os.getgroups()) | {os.getgid()}),
            "read": len(open(args[args.index("--data") + 1], "rb").read()),
        }
        json.dump(facts, open(os.path.join(out, "output.json"), "w"))
        """,
    )


@needs_docker
def test_only_the_extract_input_and_output_are_mounted(
    tmp_path: Path, runtime: str, mount_probe: tuple[TrainPackage, str]
) -> None:
    package, image = mount_probe
    job = job_for(tmp_path, image, package)
    result = executor(runtime).run(job)
    assert result.output is not None, result.stderr_tail
    facts = json.loads(result.output)
    points = {
        point: options
        for _, point, options in facts["mounts"]
        if point != "/" and not point.startswith(("/proc", "/sys", "/dev"))
    }
    # docker's own per-container files, then the three of the file contract and /tmp
    docker_files = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
    contract = {"/data/dataset.parquet", "/input/input.json", "/output", "/tmp"}
    assert set(points) - docker_files == contract
    assert points["/data/dataset.parquet"].split(",")[0] == "ro"
    assert points["/input/input.json"].split(",")[0] == "ro"
    assert facts["data"] == ["dataset.parquet"] and facts["input"] == ["input.json"]
    assert facts["groups"] == [10001]  # no supplementary group
    assert facts["read"] == job.dataset.stat().st_size
    info = job.dataset.stat()  # the executor made the 0600 extract readable by 10001
    assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (10001, 0o640)


@needs_docker
def test_a_dataset_outside_the_run_folder_is_never_modified(
    tmp_path: Path, runtime: str, mount_probe: tuple[TrainPackage, str]
) -> None:
    package, image = mount_probe
    job = job_for(tmp_path, image, package)
    registry = tmp_path / "registry.parquet"
    shutil.copy(job.dataset, registry)
    os.chmod(registry, 0o600)
    outside = dataclasses.replace(job, dataset=registry)
    with pytest.raises(docker_executor.ExecutorError, match="not readable by"):
        executor(runtime).run(outside)
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600
    assert registry.stat().st_gid == 0
    link = job.workdir / "link.parquet"
    link.symlink_to(registry)
    with pytest.raises(docker_executor.ExecutorError, match="symlink"):
        executor(runtime).run(dataclasses.replace(job, dataset=link))
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600


# -- the layer rules without Docker ---------------------------------------------------
def _package(tmp_path: Path) -> TrainPackage:
    folder = tmp_path / "survival.km"
    shutil.copytree(TRAINS_DIR / "survival.km", folder)
    return load_package(folder)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([], None),
        ([(f"{SITE}/hook.pth", "file", b"import os")], "holds 'opt/venv"),
        ([(f"{SITE}/.wh.pht", "file", b"")], "deletes files"),
        ([("opt/train/.wh..wh..opq", "file", b"")], "deletes files"),
        ([("opt/train/x", "link", b"opt/train/entrypoint.py")], "(hard link)"),
        ([("opt/train/fifo", "fifo", b"")], "(fifo)"),
        ([("../escape", "file", b"")], "'..'"),
        ([("opt/train/entrypoint.py", "file", b"again")], "twice"),
    ],
)
def test_train_layer_rules(
    tmp_path: Path, extra: list[Any], reason: str | None
) -> None:
    package = _package(tmp_path)
    layer = layer_tar([*train_files(package), *extra])
    if reason is None:
        check_train_layer(tar_entries(layer), package)
    else:
        with pytest.raises(ImageRefused) as caught:
            check_train_layer(tar_entries(layer), package)
        assert reason in str(caught.value)


def test_set_id_bits_and_xattrs_are_refused(tmp_path: Path) -> None:
    package = _package(tmp_path)
    base = tar_entries(layer_tar(train_files(package)))
    setuid = [
        image_check.Entry(e.path, e.kind, e.mode | 0o4000, e.xattrs, e.data)
        if e.path.endswith("entrypoint.py")
        else e
        for e in base
    ]
    with pytest.raises(ImageRefused, match="set-id"):
        check_train_layer(setuid, package)
    caps = [
        image_check.Entry(e.path, e.kind, e.mode, ("security.capability",), e.data)
        for e in base
    ]
    with pytest.raises(ImageRefused, match="extended attributes"):
        check_train_layer(caps, package)


def test_the_layer_digest_is_the_manifest_code_digest(tmp_path: Path) -> None:
    package = _package(tmp_path)
    found = image_check.code_digest(
        package, package.manifest_bytes, package.entrypoint.read_bytes()
    )
    assert found == package.digest
    changed = image_check.code_digest(package, package.manifest_bytes, b"pass\n")
    assert changed != package.digest
