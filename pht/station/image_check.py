"""Tie a train image to the code digest the station verified, before it runs.

The signed train statement names an image ID and a code digest; the station checks the
code digest against its own copy of the train (:mod:`pht.manifest`) and logs it. This
module makes sure the image *is* that code on the trusted runtime, so that no other code
can run under the digest:

* **layers** - the image's layers (``RootFS.Layers``, content digests the image ID
  binds) are those of a runtime image the station trusts, plus exactly one layer;
* **train layer** - that one layer holds nothing but the directories ``opt`` and
  ``opt/train`` and the regular files ``opt/train/manifest.yaml`` and
  ``opt/train/entrypoint.py`` (no whiteouts, links, devices, FIFOs, extended attributes,
  set-id bits, other paths), and those two files hash to the code digest of the
  station's copy of the train (the formula of :attr:`TrainPackage.digest`);
* **config** - ``User`` is ``10001:10001``, ``Entrypoint`` is the train entrypoint,
  ``Env`` and ``WorkingDir`` are the runtime's, ``Labels`` are the runtime's plus the
  two ``pht images build`` adds (train and code digest), the OS and architecture are the
  runtime's, and every other field (``Cmd``, ``Volumes``, ``OnBuild``, ``Healthcheck``,
  ``StopSignal``, ``Shell``, ``ExposedPorts`` ...) is empty.

So what runs is the trusted runtime byte for byte (interpreter, numpy, pandas, pyarrow,
scipy, the ``pht`` package) plus the two files the code digest covers, started the way
the station expects. The code digest itself still covers only the manifest and the
entrypoint; the runtime is pinned by the station's trust in its runtime image, not by the
methodologist's signature.

The trusted runtimes are image IDs: those the station names, else those ``pht images
build`` recorded on this host (:func:`pht.images.trusted_runtimes`). Never a tag: a
``docker load`` of a crafted archive can move any tag. The train layer is read from the
overlay2 layer folder the engine reports (local engines, milliseconds) or else from
``docker save`` of the image (any engine, seconds); verdicts are cached per (image ID,
code digest, runtime ID).

Refusals raise :class:`ImageRefused` (an :class:`~pht.errors.ExecutorError`); their
text names the rule and the offending field or path inside the image, never a host path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pht.errors import ConfigError, ExecutorError
from pht.manifest import TrainPackage, load_package

if TYPE_CHECKING:
    from pht.station.executors import Job

log = logging.getLogger(__name__)

TRAIN_USER = "10001:10001"
TRAIN_FOLDER = "opt/train"
TRAIN_FILES = ("manifest.yaml", "entrypoint.py")
TRAIN_ENTRYPOINT = ("/opt/venv/bin/python", "-I", "/opt/train/entrypoint.py")
TRAIN_LAYER_DIRS = frozenset({"opt", TRAIN_FOLDER})
LABEL_TRAIN = "org.pht.train"
LABEL_CODE = "org.pht.code_digest"
MAX_TRAIN_LAYER = 4 * 1024**2
"""A train layer larger than this (bytes, or as a tar) is refused unread."""
MAX_ENTRIES = 64
ALLOWED_XATTRS = frozenset({"security.selinux"})
_IGNORED_CONFIG = frozenset({"Image"})  # the builder's parent reference; no effect

Reader = Literal["auto", "overlay", "save"]


class ImageRefused(ExecutorError):
    """A train image is not the verified train code on the trusted runtime."""


def _refuse(rule: str) -> ImageRefused:
    return ImageRefused(f"train image refused: {rule}")


def _shown(text: str) -> str:
    """An image-side name, printable and short, for a refusal message."""
    clean = "".join(c if c.isprintable() and c.isascii() else "?" for c in text)
    return repr(clean[:80] + ("..." if len(clean) > 80 else ""))


# -- the train layer ------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One entry of a layer: ``kind`` is dir, file or what else it is."""

    path: str
    kind: str
    mode: int
    xattrs: tuple[str, ...] = ()
    data: bytes | None = None


def check_train_layer(entries: Sequence[Entry], package: TrainPackage) -> None:
    """Refuse a train layer that is not exactly the train folder of ``package``."""
    if len(entries) > MAX_ENTRIES:
        raise _refuse(f"its train layer has more than {MAX_ENTRIES} entries")
    for entry in entries:  # what no entry may be, wherever it is
        name = entry.path
        if name.rsplit("/", 1)[-1].startswith(".wh.") or entry.kind == "whiteout":
            raise _refuse(f"its train layer deletes files (whiteout {_shown(name)})")
        if set(entry.xattrs) - ALLOWED_XATTRS:
            raise _refuse(f"{_shown(name)} in its train layer has extended attributes")
        if entry.mode & 0o7000:
            raise _refuse(f"{_shown(name)} in its train layer has set-id/sticky bits")
    files: dict[str, bytes] = {}
    for entry in entries:  # where entries may be
        name = entry.path
        if entry.kind == "dir" and name in TRAIN_LAYER_DIRS:
            continue
        if entry.kind == "file" and entry.data is None:
            raise _refuse(f"{_shown(name)} in its train layer is over the size cap")
        if (
            entry.kind == "file"
            and name.startswith(TRAIN_FOLDER + "/")
            and name[len(TRAIN_FOLDER) + 1 :] in TRAIN_FILES
        ):
            if name in files:
                raise _refuse(f"its train layer holds {_shown(name)} twice")
            files[name] = entry.data or b""
            continue
        raise _refuse(
            f"its train layer holds {_shown(name)} ({entry.kind}); a train layer may "
            f"hold only /{TRAIN_FOLDER}/{{{','.join(TRAIN_FILES)}}}"
        )
    missing = [f for f in TRAIN_FILES if f"{TRAIN_FOLDER}/{f}" not in files]
    if missing:
        raise _refuse(f"its train layer lacks /{TRAIN_FOLDER}/{missing[0]}")
    found = code_digest(
        package,
        files[f"{TRAIN_FOLDER}/manifest.yaml"],
        files[f"{TRAIN_FOLDER}/entrypoint.py"],
    )
    if found != package.digest:
        raise _refuse(
            f"the train code in the image has digest {found}, expected {package.digest} "
            "(the code digest this station verified)"
        )


def code_digest(package: TrainPackage, manifest: bytes, entrypoint: bytes) -> str:
    """The code digest of these two files, by the formula of ``package.digest``."""
    with tempfile.TemporaryDirectory(prefix="pht-image-check-") as tmp:
        path = Path(tmp) / "entrypoint.py"
        path.write_bytes(entrypoint)
        other = dataclasses.replace(package, manifest_bytes=manifest, entrypoint=path)
        return other.digest


def _norm(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(f"its train layer has a path with '..': {_shown(name)}")
    return "/".join(parts)


def overlay_entries(root: Path) -> list[Entry]:
    """The entries of an overlay2 layer folder, without following anything."""
    entries: list[Entry] = []

    def xattrs(path: str) -> tuple[str, ...]:
        try:
            return tuple(os.listxattr(path, follow_symlinks=False))
        except OSError:
            return ()

    def walk(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as it:
            for item in sorted(it, key=lambda e: e.name):
                if len(entries) > MAX_ENTRIES:
                    return
                name = f"{prefix}{item.name}"
                info = item.stat(follow_symlinks=False)
                mode = stat.S_IMODE(info.st_mode)
                if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                    # overlay2 stores a whiteout as a 0/0 character device
                    dirname, _, base = name.rpartition("/")
                    name = f"{dirname}/.wh.{base}" if dirname else f".wh.{base}"
                    entries.append(Entry(name, "whiteout", mode))
                elif stat.S_ISDIR(info.st_mode):
                    entries.append(Entry(name, "dir", mode, xattrs(item.path)))
                    walk(Path(item.path), name + "/")
                elif stat.S_ISREG(info.st_mode):
                    entries.append(
                        Entry(
                            name,
                            "file",
                            mode,
                            xattrs(item.path),
                            _read_regular(item.path, info.st_size),
                        )
                    )
                else:
                    entries.append(Entry(name, _kind_of(info.st_mode), mode))

    walk(root, "")
    return entries


def _kind_of(mode: int) -> str:
    for test, kind in (
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def _read_regular(path: str, size: int) -> bytes | None:
    if size > MAX_TRAIN_LAYER:
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_TRAIN_LAYER + 1)
    return data if len(data) <= MAX_TRAIN_LAYER else None


def tar_entries(layer: bytes) -> list[Entry]:
    """The entries of a layer tar (as ``docker save`` writes it)."""
    entries: list[Entry] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(layer), mode="r:") as tar:
            for member in tar:
                if len(entries) > MAX_ENTRIES:
                    break
                name = _norm(member.name)
                xattrs = tuple(
                    key.split(".xattr.", 1)[1]
                    for key in member.pax_headers
                    if ".xattr." in key
                )
                mode = member.mode & 0o7777
                if member.isdir():
                    entries.append(Entry(name, "dir", mode, xattrs))
                elif member.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    handle = tar.extractfile(member)
                    data = handle.read() if handle is not None else None
                    entries.append(Entry(name, "file", mode, xattrs, data))
                else:
                    kind = {
                        tarfile.SYMTYPE: "symlink",
                        tarfile.LNKTYPE: "hard link",
                        tarfile.FIFOTYPE: "fifo",
                        tarfile.CHRTYPE: "character device",
                        tarfile.BLKTYPE: "block device",
                    }.get(member.type, "special file")
                    entries.append(Entry(name, kind, mode, xattrs))
    except tarfile.TarError:
        raise _refuse("its train layer is not a readable tar") from None
    return entries


class _Chunks(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (the ``docker save`` stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def saved_layer(chunks: Iterable[bytes], diff_id: str) -> bytes:
    """Find the layer tar with content digest ``diff_id`` in a ``docker save`` stream.

    Every regular member is hashed as it streams by (legacy and OCI layouts alike);
    only the first :data:`MAX_TRAIN_LAYER` bytes of each are kept.
    """
    stream = io.BufferedReader(_Chunks(chunks), buffer_size=1 << 20)
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if not member.isreg():
                continue
            handle = outer.extractfile(member)
            if handle is None:
                continue
            digest = hashlib.sha256()
            head = bytearray()
            while block := handle.read(1 << 20):
                digest.update(block)
                if len(head) <= MAX_TRAIN_LAYER:
                    head += block
            if "sha256:" + digest.hexdigest() == diff_id:
                if len(head) > MAX_TRAIN_LAYER:
                    raise _refuse(
                        f"its train layer is larger than {MAX_TRAIN_LAYER} bytes"
                    )
                return bytes(head)
    raise _refuse("its train layer is missing from the engine's export")


# -- the config -----------------------------------------------------------------------
def _empty(value: Any) -> bool:
    return value is None or value is False or value in ("", 0, [], {})


def check_config(
    image: Mapping[str, Any], runtime: Mapping[str, Any], package: TrainPackage
) -> None:
    """Refuse an image whose config is not what ``pht images build`` makes."""
    for key in ("Os", "Architecture", "Variant"):
        if image.get(key) != runtime.get(key):
            raise _refuse(f"its {key} differs from the trusted runtime's")
    config = image.get("Config") or {}
    base = runtime.get("Config") or {}
    expected: dict[str, Any] = {
        "User": TRAIN_USER,
        "Entrypoint": list(TRAIN_ENTRYPOINT),
        "Env": base.get("Env"),
        "WorkingDir": base.get("WorkingDir"),
        "Labels": {
            **(base.get("Labels") or {}),
            LABEL_TRAIN: str(package.manifest.ref),
            LABEL_CODE: package.digest,
        },
    }
    if config.get("Volumes"):
        raise _refuse("it declares volumes (VOLUME), which outlive the container")
    for key, value in config.items():
        if key in _IGNORED_CONFIG or key in expected:
            continue
        if not _empty(value):
            raise _refuse(f"its config sets {_shown(key)}, which a train image may not")
    for key, want in expected.items():
        got = config.get(key)
        if _empty(got) and _empty(want):
            continue
        if got != want:
            if key == "Labels" and isinstance(got, dict):
                wrong = sorted(
                    k for k in set(got) | set(want) if got.get(k) != want.get(k)
                )
                raise _refuse(
                    "its labels differ from the expected ones: "
                    + ", ".join(_shown(k) for k in wrong[:5])
                )
            raise _refuse(f"its {key} is not the one a train image must have")


def check_layers(image: Mapping[str, Any], runtime: Mapping[str, Any]) -> str:
    """Refuse unless the image is the runtime's layers plus one; return that layer."""
    layers = list((image.get("RootFS") or {}).get("Layers") or [])
    base = list((runtime.get("RootFS") or {}).get("Layers") or [])
    if not base:
        raise _refuse("the trusted runtime image lists no layers")
    if layers[: len(base)] != base:
        raise _refuse("it is not built on the trusted runtime image")
    if len(layers) != len(base) + 1:
        raise _refuse(
            f"it has {len(layers) - len(base)} layers on top of the trusted runtime, "
            "expected exactly one (COPY manifest.yaml entrypoint.py /opt/train/)"
        )
    return str(layers[-1])


# -- the check ------------------------------------------------------------------------
class ImageCheck(Protocol):
    """Decides whether an image may run ``job``; raises :class:`ImageRefused`."""

    def verify(self, client: Any, image: Mapping[str, Any], job: Job) -> None:
        """Refuse ``image`` (its ``docker image inspect`` attributes) for ``job``."""
        ...


_VERIFIED: dict[tuple[str, str], str] = {}
"""(image ID, station code key) -> the ID of the trusted runtime it was verified on."""
_RUNTIMES: dict[str, Mapping[str, Any]] = {}
"""Runtime image ID -> its attributes (an image ID names immutable content)."""
_LOCK = threading.Lock()


def _station_code(folder: Path) -> str:
    """A key for the station's copy of the train: its two files, as bytes."""
    h = hashlib.sha256(b"pht-image-check/1\x00")
    for name in TRAIN_FILES:
        part = (folder / name).read_bytes()
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


class TrainImageCheck:
    """The image is the verified train code on a trusted runtime (module docstring).

    ``runtimes`` pins trusted runtime image IDs; without it they are read on every
    check from :func:`pht.images.trusted_runtimes`. ``reader`` picks how the train
    layer is read: ``overlay`` (the engine's overlay2 folder), ``save`` (``docker
    save``) or ``auto`` (overlay2 when the engine is local, else save). A verdict is
    cached per image ID and station copy of the train, and holds while its runtime
    stays trusted.
    """

    def __init__(
        self, runtimes: Sequence[str] | None = None, reader: Reader = "auto"
    ) -> None:
        self.runtimes = tuple(runtimes) if runtimes is not None else None
        self.reader = reader

    def _trusted_ids(self) -> list[str]:
        if self.runtimes is not None:
            return list(self.runtimes)
        from pht.images import trusted_runtimes

        return trusted_runtimes()

    @staticmethod
    def _runtime(client: Any, image_id: str) -> Mapping[str, Any] | None:
        import docker

        with _LOCK:
            known = _RUNTIMES.get(image_id)
        if known is not None:
            return known
        try:
            attrs = client.images.get(image_id).attrs
        except docker.errors.ImageNotFound:
            return None
        if attrs.get("Id") != image_id:  # an ID, never a tag or a prefix
            return None
        with _LOCK:
            _RUNTIMES[image_id] = attrs
        return attrs

    def _runtime_for(
        self, client: Any, image: Mapping[str, Any], ids: Sequence[str]
    ) -> Mapping[str, Any]:
        runtimes = [r for r in (self._runtime(client, i) for i in ids) if r]
        if not runtimes:
            raise _refuse(
                "no trusted runtime image is loaded at this station; build the "
                "images here (pht images build) or docker load the runtime and add "
                "its image ID to the trusted runtimes"
            )
        layers = list((image.get("RootFS") or {}).get("Layers") or [])
        for runtime in runtimes:
            base = list((runtime.get("RootFS") or {}).get("Layers") or [])
            if base and layers[: len(base)] == base:
                return runtime
        return runtimes[0]  # check_layers says why it does not fit

    def _entries(
        self, client: Any, image: Mapping[str, Any], diff_id: str
    ) -> list[Entry]:
        driver = image.get("GraphDriver") or {}
        upper = (driver.get("Data") or {}).get("UpperDir")
        local = (
            driver.get("Name") == "overlay2"
            and isinstance(upper, str)
            and os.path.isdir(upper)
        )
        if self.reader == "overlay" or (self.reader == "auto" and local):
            if not local:
                raise _refuse("the engine reports no local overlay2 layer folder")
            return overlay_entries(Path(str(upper)))
        chunks = client.api.get_image(image["Id"])
        return tar_entries(saved_layer(chunks, diff_id))

    def verify(self, client: Any, image: Mapping[str, Any], job: Job) -> None:
        """Refuse ``image`` unless it is ``job``'s train code on a trusted runtime."""
        folder = job.entrypoint.parent
        unreadable = _refuse(
            "the station's copy of the train is unreadable, so its code digest "
            "cannot be checked against the image"
        )
        try:
            code = _station_code(folder)
        except OSError:
            raise unreadable from None
        ids = self._trusted_ids()
        key = (str(image["Id"]), code)
        with _LOCK:
            if _VERIFIED.get(key) in ids:
                return
        try:
            package = load_package(folder)
            if _station_code(folder) != code:
                raise _refuse(
                    "the station's copy of the train changed during the check"
                )
        except (ConfigError, OSError):
            raise unreadable from None
        runtime = self._runtime_for(client, image, ids)
        diff_id = check_layers(image, runtime)
        check_config(image, runtime, package)
        check_train_layer(self._entries(client, image, diff_id), package)
        with _LOCK:
            _VERIFIED[key] = str(runtime["Id"])
        log.info(
            "image %s verified: code %s on runtime %s",
            key[0],
            package.digest,
            runtime["Id"],
        )


class UnsafeSkipCodeCheck:
    """Run any code an image holds, unchecked: only for tests of the sandbox itself.

    The executor still refuses images that declare volumes.
    """

    def verify(self, client: Any, image: Mapping[str, Any], job: Job) -> None:
        """Accept every image."""
        log.warning("image %s runs without a code check", image.get("Id"))


def forget_verdicts() -> None:
    """Drop the cached verdicts and runtimes (tests measure first runs with it)."""
    with _LOCK:
        _VERIFIED.clear()
        _RUNTIMES.clear()
