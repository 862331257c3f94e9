"""Executors run a train's entrypoint under the file contract of :mod:`pht.runtime`.

``Executor.run(job)`` gets the train entrypoint, the input file, the dataset and an
output folder, and returns a :class:`JobResult` with the bytes of ``output.json``. The
station never trusts what it gets back: it parses and checks it itself.

:class:`ProcessExecutor` runs the entrypoint in a sandbox built from Linux kernel
features, each enforcing one thing (see :mod:`pht.station.sandbox_init` for the
process tree):

========================  ==========================================================
control                   enforced by
========================  ==========================================================
``user``                  setuid/setgid to an unprivileged per-run uid/gid (or a
                          fixed one), ``setgroups([])``, empty capability bounding
                          and ambient sets, ``no_new_privs``; needs the station to
                          run as root
``mountns``               a mount namespace whose root is a size-capped tmpfs with
                          read-only binds of only what Python and the train need
                          (``pivot_root``); the run's work folder lives there and
                          vanishes with it; ``/etc`` holds ``ld.so.cache`` and
                          ``localtime`` only
``pidns``                 a pid namespace with its own ``/proc`` (``hidepid=2``):
                          station processes are invisible and unreachable, and when
                          the train's main process ends its pid 1 kills the rest
``netns``                 a network namespace with only a down loopback: no
                          network, not even the station's 127.0.0.1
``cgroup-memory``         one memory cap for the whole process tree (v1
                          ``memory.limit_in_bytes`` + ``memsw``, or v2
                          ``memory.max``)
``cgroup-pids``           one cap on processes and threads of the whole tree
``landlock``              read/write allowlist (defence in depth under the mount
                          namespace); from ABI 4 no TCP bind/connect, from ABI 6 no
                          signals or abstract sockets beyond the train's domain
========================  ==========================================================

plus a seccomp filter (no new namespaces, no ``bpf``, ``io_uring``, ``userfaultfd``,
``ptrace``, keyrings; :mod:`pht.station.sandbox_seccomp`) on x86-64 and arm64, rlimits
per process (address space, CPU seconds, file size, open files, no core dumps;
``RLIMIT_NPROC`` for the per-run uid), a clean environment, the dataset as an
already-open read-only descriptor, and a hard wall-clock timeout. When a control is
missing (:meth:`ProcessExecutor.missing_controls`) the executor refuses to run unless
it was built with ``allow_unsafe=True``; then it applies whatever is available.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import selectors
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from pht.errors import ExecutorError
from pht.runtime import OUTPUT_NAME
from pht.station import sandbox, sandbox_seccomp
from pht.station.sandbox_cgroup import RunCgroup, controllers

log = logging.getLogger(__name__)

INIT = Path(__file__).with_name("sandbox_init.py")
# per-run train uids/gids: just above systemd's container range (524288-1879048191)
# and below 2**31, away from system, login, dynamic-user and subuid ranges
SANDBOX_UIDS = range(0x70000000, 0x70000000 + 0x10000)
CONTROLS = (
    "user",
    "mountns",
    "pidns",
    "netns",
    "cgroup-memory",
    "cgroup-pids",
    "landlock",
)
MISSING_CONTROLS = (
    "this machine cannot provide the process sandbox; run the station as root on a "
    "Linux kernel with namespaces, cgroups (memory, pids) and Landlock, use the docker "
    "executor, or accept the risk with 'unsafe_process_sandbox: true' in the station's "
    "policy"
)
SETUP_FAILED = (
    "the process sandbox could not be set up; the details are in the station log"
)
SETUP_SECONDS = 60.0


@dataclass(frozen=True)
class Limits:
    """Resource limits for one train run.

    ``memory_bytes`` caps the whole process tree (cgroup) and each process's address
    space; ``processes`` caps the tree's processes and threads (cgroup, and
    ``RLIMIT_NPROC`` of the per-run uid); ``work_bytes`` caps everything the train
    writes (work folder, output folder, ``/tmp``).
    """

    timeout_seconds: float = 600.0
    memory_bytes: int = 8 * 1024**3
    cpu_seconds: int = 3600
    output_bytes: int = 64 * 1024**2
    open_files: int = 256
    processes: int = 64
    work_bytes: int = 256 * 1024**2


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
    """``output.json`` if it is a regular file of at most ``max_bytes``, else None.

    Opened with ``O_NOFOLLOW`` (a symlink is refused) and ``O_NONBLOCK`` (a FIFO cannot
    block the station); anything that ``fstat`` does not call a regular file (FIFO,
    directory, socket, device) is refused, and so is a file over the cap.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:  # the folder itself must not be a symlink either
        folder = os.open(output_dir, flags | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fd = os.open(OUTPUT_NAME, flags | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=folder)
    except OSError:
        return None
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks) if size <= max_bytes else None


_probes: dict[str, dict[str, bool]] = {}
_probe_lock = threading.Lock()


def _probe(python: str) -> dict[str, bool]:
    """Which namespace and user controls work here (one probe per interpreter)."""
    with _probe_lock:
        if python not in _probes:
            try:
                done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                    [python, "-I", str(INIT), "--probe"],
                    capture_output=True,
                    timeout=SETUP_SECONDS,
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                    cwd="/",
                    check=False,
                )
                _probes[python] = json.loads(done.stdout or b"{}")
            except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
                log.warning("sandbox probe failed: %s", exc)
                _probes[python] = {}
        return dict(_probes[python])


class _Sandbox:
    """One started sandbox: its init process and the run's cgroups."""

    def __init__(self, proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
        self.proc = proc
        self.cgroup = cgroup

    def kill(self) -> None:
        """SIGKILL the init (its pid 1 child takes the namespace down) and the cgroup."""
        if self.proc.poll() is None:
            self.proc.kill()
        if self.cgroup is not None:
            self.cgroup.kill()

    def finish(self) -> None:
        """Kill whatever is left, reap the init and remove the cgroups."""
        self.kill()
        self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.close()


class ProcessExecutor:
    """Run the entrypoint in a sandboxed child process (see the module docstring).

    ``uid`` fixes the sandbox uid and gid (e.g. 65534, ``nobody``); by default each run
    gets its own uid from :data:`SANDBOX_UIDS`. ``allow_unsafe`` lets runs go ahead on
    a machine that lacks some controls, with only the controls it has.
    """

    name = "process"

    def __init__(
        self,
        python: str = sys.executable,
        *,
        allow_unsafe: bool = False,
        uid: int | None = None,
        uids: range = SANDBOX_UIDS,
    ) -> None:
        if uid is not None and uid <= 0:
            raise ExecutorError(f"the sandbox uid must be positive, got {uid}")
        if uid is None and (len(uids) == 0 or uids.start <= 0):
            raise ExecutorError("the sandbox uid range must be non-empty and above 0")
        self.python = python
        self.allow_unsafe = allow_unsafe
        self.uid = uid
        self.uids = uids
        self._next_uid = itertools.count(secrets.randbelow(len(uids)))
        self._uid_lock = threading.Lock()

    def missing_controls(self) -> tuple[str, ...]:
        """The sandbox controls this machine cannot provide (empty: all present)."""
        probe = _probe(self.python) if os.geteuid() == 0 else {}
        found = controllers()
        have = {
            "user": probe.get("user", False),
            "mountns": probe.get("mountns", False),
            "pidns": probe.get("pidns", False) and probe.get("mountns", False),
            "netns": probe.get("netns", False),
            "cgroup-memory": "memory" in found,
            "cgroup-pids": "pids" in found,
            "landlock": sandbox.available() >= 1,
        }
        return tuple(name for name in CONTROLS if not have[name])

    def command(self, job: Job, data_fd: int) -> list[str]:
        """The train's command line inside the sandbox (the dataset is an fd)."""
        return [self.python, "-I", str(job.entrypoint), *self._args(job, data_fd)]

    @staticmethod
    def _args(job: Job, data_fd: int) -> list[str]:
        return [
            "--input",
            os.path.abspath(job.input_file),
            "--data-fd",
            str(data_fd),
            "--data-format",
            job.dataset.suffix.lstrip(".").lower(),
            "--output",
            os.path.abspath(job.output_dir),
        ]

    def _sandbox_uid(self) -> tuple[int, bool]:
        if self.uid is not None:
            return self.uid, False
        with self._uid_lock:
            return self.uids[next(self._next_uid) % len(self.uids)], True

    def _config(
        self, job: Job, data_fd: int, status_fd: int, missing: tuple[str, ...]
    ) -> dict[str, object]:
        limits = job.limits
        uid, per_run = (None, False) if "user" in missing else self._sandbox_uid()
        rlimits = {
            "RLIMIT_AS": limits.memory_bytes,
            "RLIMIT_CPU": limits.cpu_seconds,
            "RLIMIT_FSIZE": limits.output_bytes + 1,
            "RLIMIT_NOFILE": limits.open_files,
            "RLIMIT_CORE": 0,
        }
        if per_run:
            rlimits["RLIMIT_NPROC"] = limits.processes
        namespaces = [n for n in ("mount", "pid", "net") if f"{n}ns" not in missing]
        if "mount" not in namespaces and "pid" in namespaces:
            namespaces.remove("pid")
        return {
            "entrypoint": os.path.realpath(job.entrypoint),
            "args": self._args(job, data_fd),
            "binds": [os.path.realpath(job.entrypoint.parent)],
            "workdir": os.path.abspath(job.workdir),
            "output_dir": os.path.abspath(job.output_dir),
            "input_file": os.path.abspath(job.input_file),
            "uid": uid,
            "gid": uid,
            "namespaces": namespaces,
            "landlock": "landlock" not in missing,
            "sandbox_module": sandbox.__file__,
            "seccomp_module": sandbox_seccomp.__file__,
            "work_bytes": limits.work_bytes,
            "output_bytes": limits.output_bytes,
            # the station kills at the timeout; the init's own deadline is a backstop
            "timeout": limits.timeout_seconds + 5.0,
            "rlimits": rlimits,
            "data_fd": data_fd,
            "status_fd": status_fd,
        }

    def _launch(self, job: Job, session: bool, stderr: IO[bytes]) -> _Sandbox:
        """Start the sandbox's init for ``job``; return once the train is running."""
        missing = self.missing_controls()
        if missing:
            if not self.allow_unsafe:
                raise ExecutorError(
                    f"{MISSING_CONTROLS} (missing: {', '.join(missing)})"
                )
            log.warning("running a train without sandbox controls: %s", missing)
        started = time.monotonic()
        job.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.unlink(job.output_dir / OUTPUT_NAME)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("stale output in %s: %s", job.output_dir, exc)
            raise ExecutorError(f"a stale {OUTPUT_NAME} cannot be removed") from None
        try:
            data_fd = os.open(job.dataset, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            log.warning("dataset %s cannot be opened: %s", job.dataset, exc)
            raise ExecutorError("the dataset cannot be opened for the train") from None
        if not stat.S_ISREG(os.fstat(data_fd).st_mode):
            os.close(data_fd)
            raise ExecutorError("the dataset is not a regular file")
        os.set_blocking(data_fd, True)
        status_r, status_w = os.pipe()
        cgroup = None
        try:
            if "cgroup-memory" not in missing or "cgroup-pids" not in missing:
                cgroup = RunCgroup(job.limits.memory_bytes, job.limits.processes)
            config = self._config(job, data_fd, status_w, missing)
            config["cgroups"] = cgroup.procs_files if cgroup else []
            pipe = subprocess.PIPE if session else subprocess.DEVNULL
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [self.python, "-I", str(INIT), json.dumps(config)],
                pass_fds=(data_fd, status_w),
                cwd="/",
                env=_clean_env(Path(os.path.abspath(job.workdir))),
                stdin=pipe,
                stdout=pipe,
                stderr=stderr,
                close_fds=True,
            )
        except OSError as exc:
            os.close(status_r)
            if cgroup is not None:
                cgroup.close()
            log.warning("sandbox init could not start: %s", exc)
            raise ExecutorError(SETUP_FAILED) from None
        finally:
            os.close(data_fd)
            os.close(status_w)
        box = _Sandbox(proc, cgroup)
        try:
            if cgroup is not None:
                # cgroup v1 migration waits for an RCU grace period: do it while the
                # init's interpreter starts; the init itself checks before it forks
                cgroup.attach(proc.pid)
        except OSError as exc:
            log.warning("the train's init could not join its cgroups: %s", exc)
        deadline = started + min(SETUP_SECONDS, job.limits.timeout_seconds)
        reason = _await_start(status_r, deadline)
        if reason is not None:
            box.finish()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            log.warning("sandbox setup for %s failed: %s", job.entrypoint, reason)
            raise ExecutorError(SETUP_FAILED)
        log.debug(
            "sandbox for %s up in %.3fs", job.entrypoint, time.monotonic() - started
        )
        return box

    def start(self, job: Job) -> ProcessChannel:
        """Start the job as a session speaking JSON lines over stdin/stdout."""
        stderr = open(job.workdir / "stderr.log", "wb")  # noqa: SIM115 - closed by channel
        try:
            box = self._launch(job, True, stderr)
        except BaseException:
            stderr.close()
            raise
        return ProcessChannel(box, stderr, job)

    def run(self, job: Job) -> JobResult:
        """Run the job; kill the whole sandbox at the timeout."""
        stderr_path = job.workdir / "stderr.log"
        started = time.monotonic()
        timed_out = False
        with open(stderr_path, "wb") as stderr:
            box = self._launch(job, False, stderr)
            try:
                left = job.limits.timeout_seconds - (time.monotonic() - started)
                returncode: int | None = box.proc.wait(timeout=max(left, 0.001))
            except subprocess.TimeoutExpired:
                timed_out = True
                returncode = None
            finally:
                box.finish()
        elapsed = time.monotonic() - started
        tail = stderr_path.read_bytes()[-4000:].decode("utf-8", "replace")
        output = (
            None if timed_out else read_output(job.output_dir, job.limits.output_bytes)
        )
        log.debug(
            "process job %s ended rc=%s in %.2fs", job.entrypoint, returncode, elapsed
        )
        return JobResult(returncode, output, elapsed, timed_out, tail)


def _await_start(status: int, deadline: float) -> str | None:
    """None once the train is running, else why the sandbox did not come up."""
    got = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timed out"
            with selectors.DefaultSelector() as selector:
                selector.register(status, selectors.EVENT_READ)
                if not selector.select(left):
                    return "timed out"
            chunk = os.read(status, 4096)
            got += chunk
            if got.startswith(b"K"):
                return None
            if not chunk:
                break
    finally:
        os.close(status)
    if got.startswith(b"E"):
        return got[1:].decode("utf-8", "replace")
    return "the init exited before the train started"


class ProcessChannel:
    """The station's end of a session with a sandboxed train (JSON lines on pipes)."""

    def __init__(self, box: _Sandbox, stderr: IO[bytes], job: Job) -> None:
        self._box = box
        self.proc = box.proc
        self._stderr = stderr
        self._job = job
        self._buffer = b""
        self._deadline = time.monotonic() + job.limits.timeout_seconds
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)

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
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> str:
        """Ask the train to stop, then kill the whole sandbox and remove its cgroups."""
        if self.proc.poll() is None:
            self.send(b'{"op": "close"}')
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._box.finish()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
        self._stderr.close()
        return (
            (self._job.workdir / "stderr.log")
            .read_bytes()[-4000:]
            .decode("utf-8", "replace")
        )
