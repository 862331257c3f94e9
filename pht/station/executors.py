"""Executors run a train's entrypoint under the file contract of :mod:`pht.runtime`.

``Executor.run(job)`` gets the train entrypoint, the input file, the dataset and an
output folder, and returns a :class:`JobResult` with the bytes of ``output.json``. The
station never trusts what it gets back: it parses and checks it itself.

:class:`ProcessExecutor` is the portable default: a child process of the station's own
Python with a clean environment (no inherited variables, isolated mode), its own working
folder, resource limits (address space, CPU seconds, file size, open files) and a hard
wall-clock timeout after which the whole process group is killed. It keeps honest code
honest; the sandbox against hostile code is the container executor.
"""

from __future__ import annotations

import logging
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from pht.runtime import OUTPUT_NAME
from pht.station.sandbox import confine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one train run."""

    timeout_seconds: float = 600.0
    memory_bytes: int = 8 * 1024**3
    cpu_seconds: int = 3600
    output_bytes: int = 64 * 1024**2
    open_files: int = 256


@dataclass(frozen=True)
class Job:
    """One run of a train's entrypoint."""

    entrypoint: Path
    input_file: Path
    dataset: Path
    output_dir: Path
    workdir: Path
    limits: Limits = Limits()
    image: str | None = None


@dataclass(frozen=True)
class JobResult:
    """What came back from a run; ``output`` is None when no output file was written."""

    returncode: int | None
    output: bytes | None
    elapsed_seconds: float
    timed_out: bool
    stderr_tail: str


class Channel(Protocol):
    """A live train session: one line of JSON out, one line back, per round."""

    def receive(self, timeout: float) -> bytes | None:
        """The next line from the train, or None on timeout, exit or oversize."""
        ...

    def send(self, line: bytes) -> None:
        """Send one line to the train."""
        ...

    def close(self) -> str:
        """End the session (kill if needed); return the tail of the train's stderr."""
        ...


class Executor(Protocol):
    """Runs jobs; implementations: process (here) and docker."""

    name: str

    def run(self, job: Job) -> JobResult:
        """Run ``job`` to completion or timeout."""
        ...

    def start(self, job: Job) -> Channel:
        """Start ``job`` as a long-lived session for an iterative train."""
        ...


def _clean_env(workdir: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def read_output(output_dir: Path, max_bytes: int) -> bytes | None:
    """Read ``output.json`` without following symlinks and within a size cap."""
    path = output_dir / OUTPUT_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        return None
    return data


class ProcessExecutor:
    """Run the entrypoint in a child Python process with a clean environment."""

    name = "process"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def _readable(self, job: Job) -> list[str]:
        """What a train may read: Python, its import path, its own folder."""
        import pht

        paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        paths.update(
            {
                "/usr",
                "/lib",
                "/lib64",
                "/bin",
                "/etc",
                "/proc",
                "/dev",
                "/sys/devices/system/cpu",
            }
        )
        paths.update(
            {
                str(Path(pht.__file__).resolve().parent),
                str(job.entrypoint.resolve().parent),
                str(Path(self.python).resolve().parent),
            }
        )
        return sorted(paths)

    def _limit(self, job: Job) -> None:  # runs in the child before exec
        os.setsid()
        limits = job.limits
        confine(self._readable(job), [str(job.workdir), "/dev/null"])
        resource.setrlimit(
            resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)
        )
        resource.setrlimit(
            resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds)
        )
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (limits.output_bytes + 1, limits.output_bytes + 1)
        )
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)
        )
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def command(self, job: Job, data_fd: int) -> list[str]:
        """The command line of a job (the dataset is an inherited, read-only fd)."""
        return [
            self.python,
            "-I",
            str(job.entrypoint),
            "--input",
            str(job.input_file),
            "--data-fd",
            str(data_fd),
            "--data-format",
            job.dataset.suffix.lstrip(".").lower(),
            "--output",
            str(job.output_dir),
        ]

    def _prepare(self, job: Job) -> int:
        """Create the output folder and open the dataset for the train."""
        job.output_dir.mkdir(parents=True, exist_ok=True)
        return os.open(job.dataset, os.O_RDONLY)

    def start(self, job: Job) -> ProcessChannel:
        """Start the job as a session speaking JSON lines over stdin/stdout."""
        data_fd = self._prepare(job)
        stderr = open(job.workdir / "stderr.log", "wb")  # noqa: SIM115 - closed by channel
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self.command(job, data_fd),
            pass_fds=(data_fd,),
            cwd=job.workdir,
            env=_clean_env(job.workdir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            preexec_fn=lambda: self._limit(job),  # noqa: PLW1509
            close_fds=True,
        )
        os.close(data_fd)
        return ProcessChannel(proc, stderr, job)

    def run(self, job: Job) -> JobResult:
        """Run the job; kill the process group at the timeout."""
        data_fd = self._prepare(job)
        stderr_path = job.workdir / "stderr.log"
        started = time.monotonic()
        timed_out = False
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self.command(job, data_fd),
                pass_fds=(data_fd,),
                cwd=job.workdir,
                env=_clean_env(job.workdir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=lambda: self._limit(job),  # noqa: PLW1509
                close_fds=True,
            )
            try:
                returncode: int | None = proc.wait(timeout=job.limits.timeout_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                returncode = None
        os.close(data_fd)
        elapsed = time.monotonic() - started
        tail = stderr_path.read_bytes()[-4000:].decode("utf-8", "replace")
        output = (
            None if timed_out else read_output(job.output_dir, job.limits.output_bytes)
        )
        log.debug(
            "process job %s ended rc=%s in %.2fs", job.entrypoint, returncode, elapsed
        )
        return JobResult(returncode, output, elapsed, timed_out, tail)


class ProcessChannel:
    """The station's end of a session with a child process (JSON lines on pipes)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], stderr: IO[bytes], job: Job
    ) -> None:
        self.proc = proc
        self._stderr = stderr
        self._job = job
        self._buffer = b""
        self._deadline = time.monotonic() + job.limits.timeout_seconds
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)

    def receive(self, timeout: float) -> bytes | None:
        """Read one line within ``timeout`` (and the job's overall deadline)."""
        assert self.proc.stdout is not None
        end = min(time.monotonic() + timeout, self._deadline)
        cap = self._job.limits.output_bytes
        # chunks are kept in a list and only the newest is searched for the newline,
        # so a line of L bytes costs O(L), not O(L^2 / chunk)
        chunks, size = [self._buffer], len(self._buffer)
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in chunks[-1]:
                if size > cap:
                    self._buffer = b""
                    return None
                left = end - time.monotonic()
                if left <= 0 or not selector.select(left):
                    self._buffer = b"".join(chunks)
                    return None
                chunk = self.proc.stdout.read(1 << 20)
                if not chunk:
                    self._buffer = b"".join(chunks)
                    return None
                chunks.append(chunk)
                size += len(chunk)
        line, _, self._buffer = b"".join(chunks).partition(b"\n")
        return line if len(line) <= cap else None

    def send(self, line: bytes) -> None:
        """Write one line to the train's stdin."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.rstrip(b"\n") + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def close(self) -> str:
        """Ask the train to stop, then kill its process group."""
        if self.proc.poll() is None:
            self.send(b'{"op": "close"}')
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()
        return (
            (self._job.workdir / "stderr.log")
            .read_bytes()[-4000:]
            .decode("utf-8", "replace")
        )
