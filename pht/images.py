"""Build train images offline, idempotently: ``pht images build``.

1. a Docker engine (``deploy/docker-engine.sh``) and the base image made without any
   registry (``deploy/build-base-image.sh``: debootstrap + ``docker import``);
2. a host wheelhouse (``.build/wheelhouse``): the runtime dependencies pinned to the
   versions installed here, downloaded for CPython 3.11 / manylinux x86_64, plus a
   wheel of pht itself;
3. the shared runtime image ``pht/train-runtime:<hash>`` (``deploy/runtime``), tagged
   by a hash of the pht sources and the pins, so it is rebuilt only when they change;
4. one image per train (``train_images/<train>/Dockerfile``), tagged
   ``pht/train-<name>:<version>-<code digest>`` and labelled with the code digest.

Every ``docker build`` runs with ``--network none``. The result, train -> image ID, is
written to ``.build/images.json``; the ID is what methodologists sign and stations run.
The ID of every runtime image built here is added to ``.build/runtimes.json``: the
runtimes a station on this host trusts under train images
(:mod:`pht.station.image_check`). Trust is by ID, not by tag, because ``docker load``
of an archive can move a tag.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from pht.errors import ExecutorError
from pht.manifest import TRAINS_DIR, Catalogue, TrainPackage

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / ".build"
RUNTIME_PACKAGES = ("numpy", "pandas", "pyarrow", "scipy")
BASE_IMAGE = "pht/base:bookworm-py311"
IMAGES_FILE = BUILD / "images.json"
RUNTIMES_FILE = BUILD / "runtimes.json"

BuildProgress = Callable[[str, float | None], None]
"""Called as ``(step, None)`` when a build step starts and ``(step, seconds)`` when it
is done (a step that is already cached is done at once)."""

_T = TypeVar("_T")


def _step(progress: BuildProgress | None, what: str, build: Callable[[], _T]) -> _T:
    """Run one build step, telling ``progress`` when it starts and how long it took."""
    if progress is not None:
        progress(what, None)
    start = time.monotonic()
    result = build()
    if progress is not None:
        progress(what, time.monotonic() - start)
    return result


def _run(command: list[str], what: str, **kwargs: object) -> str:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    proc = subprocess.run(  # noqa: S603 - fixed argv
        command,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExecutorError(f"{what} failed: {' | '.join(tail)}")
    return str(proc.stdout)


def requirements() -> str:
    """The runtime pins: the versions installed in this environment."""
    return "".join(f"{p}=={metadata.version(p)}\n" for p in RUNTIME_PACKAGES)


def _source_hash() -> str:
    h = hashlib.sha256(requirements().encode())
    for path in sorted((REPO / "pht").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    h.update((REPO / "pyproject.toml").read_bytes())
    h.update((REPO / "deploy" / "runtime" / "Dockerfile").read_bytes())
    return h.hexdigest()[:12]


def _exists(tag: str) -> str | None:
    proc = subprocess.run(  # noqa: S603
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def engine_and_base() -> None:
    """Start the engine and build the base image (both idempotent)."""
    _run(
        ["bash", str(REPO / "deploy" / "docker-engine.sh")],
        "starting the Docker engine",
    )
    _run(
        ["bash", str(REPO / "deploy" / "build-base-image.sh")],
        "building the base image",
    )


def wheelhouse() -> Path:
    """Runtime wheels for the image's Python, plus a wheel of pht."""
    house = BUILD / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    platforms = ["--platform", "manylinux2014_x86_64", "--platform", "any"]
    for minor in range(17, 37):
        platforms += ["--platform", f"manylinux_2_{minor}_x86_64"]
    (BUILD / "requirements.txt").write_text(requirements())
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            "3.11",
            "--abi",
            "cp311",
            "--abi",
            "abi3",
            "--abi",
            "none",
            *platforms,
            "-r",
            str(BUILD / "requirements.txt"),
            "-d",
            str(house),
        ],
        "downloading the runtime wheels",
    )
    for old in house.glob("pht-*.whl"):
        old.unlink()
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(house),
            str(REPO),
        ],
        "building the pht wheel",
    )
    return house


def runtime_tag() -> str:
    """The tag of the runtime image built from this checkout's sources and pins."""
    return f"pht/train-runtime:{_source_hash()}"


def trusted_runtimes() -> list[str]:
    """IDs of the runtime images built on this host (``.build/runtimes.json``).

    A station trusts these as the runtime under train images: a train image must be
    one of them plus a layer holding only the train's manifest and entrypoint.
    """
    try:
        ids = json.loads(RUNTIMES_FILE.read_text())
    except (OSError, ValueError):
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def trust_runtime(image_id: str) -> None:
    """Add a runtime image ID to ``.build/runtimes.json`` (dropping vanished ones)."""
    BUILD.mkdir(exist_ok=True)
    with open(BUILD / ".runtimes.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = [i for i in trusted_runtimes() if i != image_id and _exists(i) == i]
        tmp = RUNTIMES_FILE.with_suffix(".json.tmp")
        tmp.write_text(json.dumps([*known, image_id], indent=1) + "\n")
        os.replace(tmp, RUNTIMES_FILE)


def runtime_image() -> str:
    """Build (or reuse) the shared runtime image; return its tag."""
    tag = runtime_tag()
    existing = _exists(tag)
    if existing:
        if existing not in trusted_runtimes():
            trust_runtime(existing)
        return tag
    house = wheelhouse()
    context = BUILD / "runtime"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "runtime" / "Dockerfile", context / "Dockerfile")
    shutil.copy(BUILD / "requirements.txt", context / "requirements.txt")
    shutil.copytree(house, context / "wheelhouse", copy_function=os.link)
    _run(
        [
            "docker",
            "build",
            "--network",
            "none",
            "-q",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-t",
            tag,
            str(context),
        ],
        "building the runtime image",
    )
    subprocess.run(  # noqa: S603 - drop the builder stage the legacy builder keeps
        [
            "docker",
            "image",
            "prune",
            "-f",
            "--filter",
            "label=org.pht.stage=runtime-builder",
        ],
        capture_output=True,
        check=False,
    )
    built = _exists(tag)
    if built is None:
        raise ExecutorError(f"the runtime image {tag} was not found after building it")
    trust_runtime(built)
    return tag


def train_image(package: TrainPackage, runtime: str) -> str:
    """Build (or reuse) one train's image; return its image ID (``sha256:...``)."""
    m = package.manifest
    code = package.digest.split(":")[1][:12]
    tag = f"pht/train-{m.name.replace('.', '-')}:{m.version}-{code}-{runtime.split(':')[1]}"
    existing = _exists(tag)
    if existing:
        return existing
    dockerfile = package.folder / "Dockerfile"
    if not dockerfile.is_file():
        raise ExecutorError(
            f"{package.folder}: no Dockerfile; add one to build an image"
        )
    _run(
        [
            "docker",
            "build",
            "--network",
            "none",
            "-q",
            "--build-arg",
            f"RUNTIME_IMAGE={runtime}",
            "--label",
            f"org.pht.train={m.ref}",
            "--label",
            f"org.pht.code_digest={package.digest}",
            "-t",
            tag,
            str(package.folder),
        ],
        f"building the image of {m.ref}",
    )
    image_id = _exists(tag)
    if image_id is None:
        raise ExecutorError(f"the image of {m.ref} was not found after building it")
    return image_id


def build_all(
    catalogue: Catalogue | None = None, progress: BuildProgress | None = None
) -> dict[str, str]:
    """Build every train image of the catalogue; return ``name@version -> image ID``.

    ``progress`` hears of each step (the engine and base image, the runtime image,
    one per train) as it starts and finishes: the first build takes minutes.
    """
    _step(progress, "Docker engine and base image", engine_and_base)
    runtime = _step(progress, "runtime image", runtime_image)
    built: dict[str, str] = {}
    for package in (catalogue or Catalogue(TRAINS_DIR)).packages():
        if not (package.folder / "Dockerfile").is_file():
            continue
        ref = str(package.manifest.ref)
        built[ref] = _step(
            progress,
            f"image of {ref}",
            functools.partial(train_image, package, runtime),
        )
    BUILD.mkdir(exist_ok=True)
    IMAGES_FILE.write_text(json.dumps(built, indent=1, sort_keys=True) + "\n")
    return built


def built_images() -> dict[str, str]:
    """The images of the last ``build_all`` that still exist (empty without Docker)."""
    if not IMAGES_FILE.is_file() or shutil.which("docker") is None:
        return {}
    recorded = json.loads(IMAGES_FILE.read_text())
    return {ref: image for ref, image in recorded.items() if _exists(image) == image}
