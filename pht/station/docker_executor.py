"""The Docker executor: the train image, run by ID, in a hardened container.

Same file contract as the process executor (:mod:`pht.runtime`): the input file and the
dataset are mounted read-only (``/input/input.json``, ``/data/dataset.<ext>``), the
train writes ``/output/output.json``. Nothing else of the station's is mounted, and the
container gets no supplementary group. Before a container is created the image must pass
an image check (:mod:`pht.station.image_check`: the image is the train code the station
verified, on the trusted runtime, with the expected config and no volumes). The
container has

* no network (``network_mode="none"``), a read-only root filesystem, no capabilities,
  ``no-new-privileges`` (the default seccomp profile stays on), uid 10001;
* pid, memory (no swap) and CPU limits, a ``noexec`` tmpfs for ``/tmp``;
* an output folder that is a host tmpfs with a size and a file-count cap (the kernel
  refuses the write past either); ``output.json`` is read back only if it is a regular
  file (no symlink, FIFO, directory, socket or device), without blocking, size-capped;
* a hard wall-clock timeout after which it is killed; it is always removed, with its
  anonymous volumes.

The dataset must be readable by uid/gid 10001 and nothing more is granted: a dataset
file inside the run folder (the station's per-run extract) is given group 10001 and
mode 0640 here; a file elsewhere is never modified and must already be readable by
uid or gid 10001 (``provision`` makes registry files ``0640 :10001``).

The image is run by its ID (never a tag); the station passes the ID from the signed
train statement. Iterative trains keep one container for the whole session: rounds are
JSON lines over the attached stdin/stdout (stderr is kept, bounded, at the station).
"""

from __future__ import annotations

import functools
import logging
import os
import select
import socket
import stat
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pht.errors import ExecutorError
from pht.station.executors import Job, JobResult, read_output
from pht.station.image_check import ImageCheck, ImageRefused, TrainImageCheck

log = logging.getLogger(__name__)

TRAIN_UID = 10001
TRAIN_GID = 10001
STDERR_CAP = 64 * 1024
DATA_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class ContainerLimits:
    """Per-container limits on top of :class:`~pht.station.executors.Limits`."""

    pids: int = 64
    memory: str = "2g"
    nano_cpus: int = 1_000_000_000
    tmp_size: str = "64m"
    output_files: int = 16


@functools.lru_cache(maxsize=1)
def _client() -> Any:
    """A Docker client that answered a ping."""
    try:
        import docker
    except ImportError:
        raise ExecutorError("the docker executor needs the `docker` package") from None
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        # a stale socket file (no engine): the SDK would leave its socket open
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            try:
                probe.connect(host.removeprefix("unix://"))
            except OSError as exc:
                raise ExecutorError(
                    f"no Docker engine reachable ({type(exc).__name__}); start one "
                    "with deploy/docker-engine.sh"
                ) from None
    client = None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        if client is not None:  # a stale socket file: no connection left open
            client.close()
        raise ExecutorError(
            f"no Docker engine reachable ({type(exc).__name__}); start one with "
            "deploy/docker-engine.sh"
        ) from None
    return client


def available() -> str | None:
    """None if a Docker engine answers, else why not."""
    try:
        _client().close()  # only asking: no connection left for the collector
    except ExecutorError as exc:
        return str(exc)
    return None


read_output_file = read_output
"""The executors' one reader of ``output.json`` (regular files only, capped)."""


def _readable_by_train(info: os.stat_result) -> bool:
    if info.st_uid == TRAIN_UID and info.st_mode & stat.S_IRUSR:
        return True
    if info.st_gid == TRAIN_GID and info.st_mode & stat.S_IRGRP:
        return True
    return bool(info.st_mode & stat.S_IROTH)


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path.parent)).is_relative_to(os.path.realpath(folder))


def prepare_dataset(job: Job) -> str:
    """Check (and inside the run folder, set) the dataset's access; return its suffix.

    The file must be a regular file, not a symlink. Inside ``job.workdir`` it is the
    station's per-run extract: it gets group 10001 and mode 0640 (through an
    ``O_NOFOLLOW`` descriptor; a file with other hard links is left alone). Elsewhere
    it must already be readable by uid or gid 10001.
    """
    suffix = job.dataset.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ExecutorError(
            f"the dataset format '{suffix}' is not supported; use "
            + " or ".join(DATA_SUFFIXES)
        )
    try:
        fd = os.open(
            job.dataset, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        )
    except OSError as exc:
        log.warning("dataset %s cannot be opened: %s", job.dataset, exc)
        raise ExecutorError(
            "the dataset cannot be opened as a regular file (missing or a symlink)"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ExecutorError("the dataset is not a regular file")
        if (
            _inside(job.dataset, job.workdir)
            and info.st_nlink == 1
            and not (info.st_gid == TRAIN_GID and stat.S_IMODE(info.st_mode) == 0o640)
        ):
            os.fchown(fd, -1, TRAIN_GID)
            os.fchmod(fd, 0o640)
            info = os.fstat(fd)
    finally:
        os.close(fd)
    if not _readable_by_train(info):
        log.warning("dataset %s is not readable by gid %s", job.dataset, TRAIN_GID)
        raise ExecutorError(
            f"the dataset is not readable by the train's uid/gid {TRAIN_UID}: give "
            f"the file group {TRAIN_GID} and mode 0640 (chgrp {TRAIN_GID}; chmod 640)"
        )
    return suffix


def _regular_file(path: Path, what: str) -> None:
    try:
        info = os.lstat(path)
    except OSError:
        raise ExecutorError(f"the {what} is missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise ExecutorError(f"the {what} is not a regular file")


class DockerExecutor:
    """Run train images in hardened, networkless, read-only containers.

    ``image_check`` decides whether an image may run a job; the default,
    :class:`~pht.station.image_check.TrainImageCheck`, admits only the verified train
    code on the trusted runtime. Images that declare volumes are refused whatever it is.
    """

    name = "docker"

    def __init__(
        self,
        limits: ContainerLimits | None = None,
        image_check: ImageCheck | None = None,
    ) -> None:
        self.limits = limits or ContainerLimits()
        self.image_check: ImageCheck = image_check or TrainImageCheck()
        self._docker = _client()

    # -- the container ------------------------------------------------------------
    def _mount_output(self, job: Job) -> None:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        options = (
            f"size={job.limits.output_bytes},nr_inodes={self.limits.output_files + 3},"
            f"uid={TRAIN_UID},gid={TRAIN_UID},mode=0700,noexec,nosuid,nodev"
        )
        proc = subprocess.run(  # noqa: S603 - fixed argv
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(job.output_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ExecutorError(
                f"cannot mount the capped output folder ({proc.stderr.strip()}); the "
                "docker executor needs root on the station host"
            )

    def _unmount_output(self, job: Job, keep: bytes | None) -> None:
        subprocess.run(  # noqa: S603
            ["umount", "-l", str(job.output_dir)], capture_output=True, check=False
        )

    def _create(self, job: Job, *, interactive: bool) -> Any:
        import docker

        if not job.image:
            raise ExecutorError("the train statement names no image digest")
        try:
            image = self._docker.images.get(job.image)
        except docker.errors.ImageNotFound:
            raise ExecutorError(
                f"image {job.image} is not loaded at this station"
            ) from None
        if image.id != job.image:
            raise ExecutorError(
                f"image ID {image.id} differs from the signed {job.image}"
            )
        if (image.attrs.get("Config") or {}).get("Volumes"):
            raise ImageRefused(
                "train image refused: it declares volumes (VOLUME), which outlive "
                "the container"
            )
        self.image_check.verify(self._docker, image.attrs, job)
        _regular_file(job.input_file, "input file")
        suffix = prepare_dataset(job)
        mounts = [
            docker.types.Mount(
                "/input/input.json", str(job.input_file), type="bind", read_only=True
            ),
            docker.types.Mount(
                f"/data/dataset{suffix}", str(job.dataset), type="bind", read_only=True
            ),
            docker.types.Mount("/output", str(job.output_dir), type="bind"),
        ]
        host_config = self._docker.api.create_host_config(
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=self.limits.pids,
            mem_limit=self.limits.memory,
            memswap_limit=self.limits.memory,
            nano_cpus=self.limits.nano_cpus,
            tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={self.limits.tmp_size}"},
            mounts=mounts,
            ipc_mode="none",
            log_config=docker.types.LogConfig(
                type="json-file", config={"max-size": "1m", "max-file": "1"}
            ),
        )
        command = [
            "--input",
            "/input/input.json",
            "--data",
            f"/data/dataset{suffix}",
            "--output",
            "/output",
        ]
        return self._docker.api.create_container(
            image.id,
            command=command,
            user=f"{TRAIN_UID}:{TRAIN_UID}",
            host_config=host_config,
            network_disabled=True,
            stdin_open=interactive,
            tty=False,
            labels={"org.pht.job": job.workdir.name},
        )["Id"]

    def _remove(self, container: str) -> None:
        """Kill and remove the container with its anonymous volumes."""
        try:
            self._docker.api.remove_container(container, v=True, force=True)
        except Exception:  # noqa: BLE001 - already gone
            log.debug("container %s was already removed", container)

    # -- single round ---------------------------------------------------------------
    def run(self, job: Job) -> JobResult:
        """Run the job to completion or timeout; the container is always removed."""
        self._mount_output(job)
        container = None
        started = time.monotonic()
        timed_out = False
        returncode: int | None = None
        output = None
        stderr = ""
        try:
            container = self._create(job, interactive=False)
            self._docker.api.start(container)
            try:
                status = self._docker.api.wait(
                    container, timeout=job.limits.timeout_seconds
                )
                returncode = int(status.get("StatusCode", -1))
            except Exception:  # noqa: BLE001 - requests timeout: kill it
                timed_out = True
                self._docker.api.kill(container)
            stderr = self._docker.api.logs(
                container, stdout=False, stderr=True, tail=50
            )[-4000:].decode("utf-8", "replace")
            if not timed_out:
                output = read_output_file(job.output_dir, job.limits.output_bytes)
        except ExecutorError as exc:
            stderr = str(exc)
            raise
        finally:
            if container is not None:
                self._remove(container)
            self._unmount_output(job, output)
        return JobResult(
            returncode, output, time.monotonic() - started, timed_out, stderr
        )

    # -- sessions -------------------------------------------------------------------
    def start(self, job: Job) -> DockerChannel:
        """Start the job as a session over the attached stdin/stdout."""
        self._mount_output(job)
        container = None
        try:
            container = self._create(job, interactive=True)
            sock = self._docker.api.attach_socket(
                container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self._docker.api.start(container)
        except Exception:
            if container is not None:
                self._remove(container)
            self._unmount_output(job, None)
            raise
        return DockerChannel(self, container, sock, job)


class DockerChannel:
    """The station's end of a session with a container (multiplexed attach stream)."""

    def __init__(
        self, executor: DockerExecutor, container: str, sock: Any, job: Job
    ) -> None:
        self.executor = executor
        self.container = container
        self._attached = sock  # the SDK's wrapper: closing it releases the socket
        self.sock: socket.socket = getattr(sock, "_sock", sock)
        self.job = job
        self._stdout = bytearray()
        self._scanned = 0  # bytes of _stdout already searched for a newline
        self._stderr = b""
        self._raw = bytearray()
        self._deadline = time.monotonic() + job.limits.timeout_seconds
        self._closed = False

    def _pump(self, until: float) -> bool:
        """Read frames until a stdout newline, EOF or the deadline; False on EOF/time."""
        # linear in the line length: only new bytes are searched, frames are consumed
        # from an offset and the buffer is trimmed once per read
        while self._stdout.find(b"\n", self._scanned) < 0:
            self._scanned = len(self._stdout)
            if len(self._stdout) > self.job.limits.output_bytes:
                return False
            left = min(until, self._deadline) - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return False
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return False
            self._raw += chunk
            offset = 0
            while len(self._raw) - offset >= 8:
                stream = self._raw[offset]
                length = struct.unpack_from(">I", self._raw, offset + 4)[0]
                if len(self._raw) - offset < 8 + length:
                    break
                payload = bytes(self._raw[offset + 8 : offset + 8 + length])
                offset += 8 + length
                if stream == 1:
                    self._stdout += payload
                else:
                    self._stderr = (self._stderr + payload)[-STDERR_CAP:]
            del self._raw[:offset]
        return True

    def receive(self, timeout: float) -> bytes | None:
        """The next line from the train, or None on timeout, exit or oversize."""
        if not self._pump(time.monotonic() + timeout):
            return None
        end = self._stdout.find(b"\n")
        line = bytes(self._stdout[:end])
        del self._stdout[: end + 1]
        self._scanned = 0
        return line if len(line) <= self.job.limits.output_bytes else None

    def send(self, line: bytes) -> None:
        """Write one line to the train's stdin."""
        try:
            self.sock.sendall(line.rstrip(b"\n") + b"\n")
        except OSError:
            pass

    def close(self) -> str:
        """End the session: close stdin, then kill and remove the container."""
        if self._closed:
            return ""
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self.executor._docker.api.wait(self.container, timeout=5)
        except Exception:  # noqa: BLE001
            pass
        self.sock.close()
        if self._attached is not self.sock:
            self._attached.close()
        self.executor._remove(self.container)
        self.executor._unmount_output(self.job, None)
        return self._stderr[-4000:].decode("utf-8", "replace")
