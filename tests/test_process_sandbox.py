"""Adversarial fixtures for the process executor's sandbox: one hostile train per attack.

Each fixture writes a small hostile entrypoint (a train signed by a trusted key would
run exactly like this) and runs it through ``ProcessExecutor.run(Job(...))`` or a
``ProcessExecutor.start(job)`` session. The train reports what it managed to do in its
``output.json``; the test checks that report and, independently, the station's side
(processes left, sockets, files, mounts).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pht.errors import ExecutorError
from pht.station import executors
from pht.station.executors import (
    MISSING_CONTROLS,
    Job,
    JobResult,
    Limits,
    ProcessExecutor,
    read_output,
)
from pht.station.sandbox_cgroup import controllers

MISSING = ProcessExecutor().missing_controls()
pytestmark = pytest.mark.skipif(
    bool(MISSING) and os.environ.get("CI") != "true",
    reason=f"this machine lacks sandbox controls {MISSING} (CI must have them)",
)

PRELUDE = """\
import json, os, sys, pathlib
ARGS = sys.argv
OUT = pathlib.Path(ARGS[ARGS.index("--output") + 1])
INPUT = pathlib.Path(ARGS[ARGS.index("--input") + 1])
DATA_FD = int(ARGS[ARGS.index("--data-fd") + 1])

def attempt(action):
    try:
        return repr(action())
    except BaseException as exc:
        return type(exc).__name__

def report(**found):
    (OUT / "output.json").write_text(json.dumps(found))
"""


def hostile(root: Path, body: str, **params: Any) -> Job:
    """A job whose entrypoint is PRELUDE + ``body`` (``{name}`` filled from params),
    laid out as the station does: a root-owned run folder, an owner-only dataset."""
    train = root / "train"
    train.mkdir()
    source = PRELUDE + textwrap.dedent(body)
    for name, value in params.items():
        source = source.replace("{" + name + "}", repr(value))
    (train / "entrypoint.py").write_text(source)
    data = root / "data"
    data.mkdir()
    (data / "extract.csv").write_text("time,event\n" + "5,1\n" * 20)
    os.chmod(data / "extract.csv", 0o600)
    run = root / "run"
    (run / "output").mkdir(parents=True)
    (run / "input.json").write_text('{"request_id": "r1"}')
    return Job(
        entrypoint=train / "entrypoint.py",
        input_file=run / "input.json",
        dataset=data / "extract.csv",
        output_dir=run / "output",
        workdir=run,
        limits=Limits(timeout_seconds=60),
    )


def with_limits(job: Job, **limits: Any) -> Job:
    return dataclasses.replace(job, limits=Limits(**{"timeout_seconds": 60, **limits}))


def found(result: JobResult) -> dict[str, Any]:
    assert result.output is not None, result.stderr_tail
    return json.loads(result.output)


def processes_of(uid: int) -> list[int]:
    """Host pids of processes running as ``uid`` (nothing of a train may survive)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                pids.append(int(entry))
    return pids


def processes_running(marker: str) -> list[int]:
    """Host pids whose command line mentions ``marker`` (the entrypoint's path)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


@pytest.fixture
def executor() -> ProcessExecutor:
    return ProcessExecutor()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener the station opened on 127.0.0.1."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    yield server
    server.close()


def nothing_connected(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return True
    connection.close()
    return False


# --- uid 0 with all capabilities --------------------------------------------------


@pytest.fixture
def root_train(tmp_path: Path) -> Job:
    return hostile(
        tmp_path,
        """
        status = dict(
            line.split(":\\t", 1)
            for line in pathlib.Path("/proc/self/status").read_text().splitlines()
            if ":\\t" in line
        )
        report(
            uid=os.getuid(), euid=os.geteuid(), gid=os.getgid(),
            groups=os.getgroups(),
            caps={k: status[k].strip() for k in status if k.startswith("Cap")},
            no_new_privs=status["NoNewPrivs"].strip(),
            setuid0=attempt(lambda: os.setuid(0)),
            chown=attempt(lambda: os.chown(str(INPUT), 0, 0)),
            rows=len(os.read(DATA_FD, 1 << 20).splitlines()),
            dataset_path=attempt(lambda: open({dataset}).read()),
        )
        """,
        dataset=str(tmp_path / "data" / "extract.csv"),
    )


def test_train_runs_as_an_unprivileged_uid_without_capabilities(
    executor: ProcessExecutor, root_train: Job
) -> None:
    got = found(executor.run(root_train))
    assert got["uid"] == got["euid"] == got["gid"]
    assert got["uid"] in executors.SANDBOX_UIDS
    assert got["groups"] == []
    assert set(got["caps"].values()) == {"0000000000000000"}  # Inh Prm Eff Bnd Amb
    assert got["no_new_privs"] == "1"
    assert got["setuid0"] == "PermissionError"
    assert got["chown"] == "PermissionError"
    # the dataset arrives as an fd; its path is not even there
    assert got["rows"] == 21
    assert got["dataset_path"] == "FileNotFoundError"


def test_a_fixed_uid_can_be_configured(root_train: Job) -> None:
    got = found(ProcessExecutor(uid=65534).run(root_train))
    assert (got["uid"], got["gid"], got["groups"]) == (65534, 65534, [])


# --- /etc/shadow and /proc/<station>/environ ---------------------------------------


@pytest.fixture
def snoop_train(tmp_path: Path) -> Job:
    return hostile(
        tmp_path,
        """
        environs = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                environs[pid] = attempt(
                    lambda: pathlib.Path(f"/proc/{pid}/environ").read_bytes()
                )
        report(
            shadow=attempt(lambda: open("/etc/shadow").read()),
            passwd=attempt(lambda: open("/etc/passwd").read()),
            etc=attempt(lambda: sorted(os.listdir("/etc"))),
            station_environ=attempt(
                lambda: pathlib.Path("/proc/{station}/environ").read_bytes()
            ),
            init_environ=attempt(lambda: pathlib.Path("/proc/1/environ").read_bytes()),
            pids=sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            environs=environs,
            env=dict(os.environ),
            root=attempt(lambda: sorted(os.listdir("/"))),
            home=attempt(lambda: os.listdir("/root")),
        )
        """,
        station=os.getpid(),
    )


def test_train_cannot_read_shadow_or_the_station_environment(
    executor: ProcessExecutor, snoop_train: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHT_STATION_CANARY", "canary-5f0c1e")
    result = executor.run(snoop_train)
    got = found(result)
    assert got["shadow"] == "FileNotFoundError"
    assert got["passwd"] == "FileNotFoundError"
    # Landlock hides the listing; below it the mount namespace has only two files
    assert got["etc"] in ("PermissionError", repr(["ld.so.cache", "localtime"]))
    assert got["station_environ"] in ("FileNotFoundError", "PermissionError")
    assert got["init_environ"] in ("FileNotFoundError", "PermissionError")
    assert got["pids"] == [2]  # itself; its pid 1 (root) is hidden by hidepid=2
    assert list(got["environs"]) == ["2"]
    assert b"canary-5f0c1e" not in result.output  # type: ignore[operator]
    assert got["root"] == "PermissionError"
    assert got["home"] in ("PermissionError", "FileNotFoundError")


# --- 127.0.0.1 listener of the station ------------------------------------------


@pytest.fixture
def station_sockets(tmp_path: Path) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A world-writable unix socket and an abstract one, both of the station."""
    os.chmod(tmp_path, 0o755)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "station.sock"))
    os.chmod(tmp_path / "station.sock", 0o777)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0pht-station-{os.getpid()}")
    for server in (unix, abstract):
        server.listen(1)
        server.setblocking(False)
    yield unix, abstract
    unix.close()
    abstract.close()


@pytest.fixture
def phone_train(
    tmp_path: Path,
    listener: socket.socket,
    station_sockets: tuple[socket.socket, socket.socket],
) -> Job:
    return hostile(
        tmp_path,
        """
        import socket

        def tcp():
            with socket.create_connection(("127.0.0.1", {port}), timeout=2) as s:
                s.sendall(b"rows")

        def udp():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                return s.sendto(b"rows", ("127.0.0.1", {port}))

        def unix(address):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(address)
                s.sendall(b"rows")

        def bind():
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                s.listen(1)

        report(
            tcp=attempt(tcp),
            udp=attempt(udp),
            unix=attempt(lambda: unix({unix_path})),
            abstract=attempt(lambda: unix("\\0pht-station-{pid}")),
            bind=attempt(bind),
            interfaces=attempt(lambda: [n for _, n in socket.if_nameindex()]),
        )
        """,
        port=listener.getsockname()[1],
        unix_path=str(tmp_path / "station.sock"),
        pid=os.getpid(),
    )


def test_train_cannot_reach_a_station_listener_on_loopback(
    executor: ProcessExecutor,
    phone_train: Job,
    listener: socket.socket,
    station_sockets: tuple[socket.socket, socket.socket],
) -> None:
    got = found(executor.run(phone_train))
    # the train's 127.0.0.1 is its own loopback, and it is down
    assert got["tcp"] in ("OSError", "PermissionError", "ConnectionRefusedError")
    assert got["udp"] in ("OSError", "PermissionError")
    assert got["unix"] == "FileNotFoundError"  # the path is not in its file system
    assert got["abstract"] in ("ConnectionRefusedError", "PermissionError")
    assert got["bind"] in ("OSError", "PermissionError")
    # if_nameindex needs a netlink socket, which the seccomp filter denies
    assert got["interfaces"] in ("['lo']", "PermissionError", "OSError"), got
    assert nothing_connected(listener)
    assert all(nothing_connected(server) for server in station_sockets)


# --- 200 processes, 3 x 3 GiB in children -----------------------------------------


@pytest.fixture
def fork_bomb_train(tmp_path: Path) -> Job:
    job = hostile(
        tmp_path,
        """
        release_r, release_w = os.pipe()
        started, error = 0, None
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError as exc:
                error = type(exc).__name__
                break
            if pid == 0:
                os.close(release_w)
                os.read(release_r, 1)
                os._exit(0)
            started += 1
        os.close(release_w)
        report(started=started, error=error)
        """,
    )
    return with_limits(job, processes=32)


def test_fork_bomb_is_capped_for_the_whole_tree(
    executor: ProcessExecutor, fork_bomb_train: Job
) -> None:
    got = found(executor.run(fork_bomb_train))
    assert got["error"] == "BlockingIOError"  # EAGAIN from pids.max / RLIMIT_NPROC
    assert got["started"] < 32


GIB = 1024**3
MIB = 1024**2


@pytest.fixture
def memory_hog_train(tmp_path: Path) -> Job:
    job = hostile(
        tmp_path,
        """
        import select
        held_r, held_w = os.pipe()
        release_r, release_w = os.pipe()
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                blob = b"x" * {size}  # touched, so resident
                os.write(held_w, b"h")
                os.read(release_r, 1)
                os._exit(len(blob) % 2)
            children.append(pid)
        os.close(held_w)
        held, dead = 0, {}
        while held + len(dead) < len(children):
            if select.select([held_r], [], [], 0.05)[0]:
                held += len(os.read(held_r, 16))
            for pid in children:
                if pid not in dead:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        dead[pid] = status
        os.close(release_w)
        signals = [os.WTERMSIG(s) for s in dead.values() if os.WIFSIGNALED(s)]
        report(held=held, killed_by=signals)
        """,
        size=300 * MIB,
    )
    # each child stays under the per-process address space cap; together they do not
    return with_limits(job, memory_bytes=640 * MIB)


def test_memory_is_capped_for_the_whole_tree(
    executor: ProcessExecutor, memory_hog_train: Job
) -> None:
    got = found(executor.run(memory_hog_train))
    assert got["held"] < 3
    assert signal.SIGKILL in got["killed_by"]  # the cgroup's OOM killer


# --- 500 MiB left in the work folder ----------------------------------------------


@pytest.fixture
def disk_filler_train(tmp_path: Path) -> Job:
    job = hostile(
        tmp_path,
        """
        written = {}
        chunk = b"x" * (8 << 20)
        for folder in (pathlib.Path.cwd(), OUT, pathlib.Path("/tmp")):
            written[str(folder)] = 0
            for i in range(64):
                try:
                    with open(folder / f"fill{i}", "wb") as handle:
                        handle.write(chunk)
                except OSError as exc:
                    written[str(folder) + " stopped by"] = type(exc).__name__
                    break
                written[str(folder)] += len(chunk)
                if sum(v for v in written.values() if isinstance(v, int)) >= 500 << 20:
                    break
        for name in ("fill0", "fill1"):  # room for the report; the rest is left
            (pathlib.Path.cwd() / name).unlink(missing_ok=True)
        report(**written)
        """,
    )
    return with_limits(job, work_bytes=64 * MIB)


def test_work_folder_is_size_capped_and_cleaned(
    executor: ProcessExecutor, disk_filler_train: Job
) -> None:
    got = found(executor.run(disk_filler_train))
    total = sum(v for v in got.values() if isinstance(v, int))
    assert total <= 64 * MIB
    assert "OSError" in got.values()  # ENOSPC on the run's tmpfs
    run = disk_filler_train.workdir
    left = {str(p.relative_to(run)) for p in run.rglob("*")}
    assert left == {"input.json", "output", "output/output.json", "stderr.log"}
    assert sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) < MIB
    assert str(run) not in Path("/proc/self/mountinfo").read_text()


# --- double fork: outliving the reply or the timeout kill -------------------------

DAEMON = """
import socket, time

def daemon():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for _ in range(600):  # phone home for up to a minute
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=0.1)
                except OSError:
                    pass
                time.sleep(0.1)
        os._exit(0)
"""


@pytest.fixture
def daemon_train(tmp_path: Path, listener: socket.socket) -> Job:
    return hostile(
        tmp_path,
        DAEMON + "daemon()\nreport(uid=os.getuid())\n",
        port=listener.getsockname()[1],
    )


@pytest.fixture
def stuck_daemon_train(tmp_path: Path, listener: socket.socket) -> Job:
    job = hostile(
        tmp_path,
        DAEMON + "daemon()\nreport(uid=os.getuid())\ntime.sleep(600)\n",
        port=listener.getsockname()[1],
    )
    return with_limits(job, timeout_seconds=3)


@pytest.fixture
def daemon_session_train(tmp_path: Path, listener: socket.socket) -> Job:
    return hostile(
        tmp_path,
        DAEMON
        + """
daemon()
for line in sys.stdin:
    if json.loads(line).get("op") == "close":
        break
    print(json.dumps({"uid": os.getuid()}), flush=True)
""",
        port=listener.getsockname()[1],
    )


def test_double_forked_daemon_dies_with_the_reply(
    executor: ProcessExecutor, daemon_train: Job, listener: socket.socket
) -> None:
    got = found(executor.run(daemon_train))
    assert processes_of(got["uid"]) == []
    assert processes_running(str(daemon_train.entrypoint)) == []
    assert nothing_connected(listener)


def test_double_forked_daemon_dies_with_the_timeout_kill(
    executor: ProcessExecutor, stuck_daemon_train: Job, listener: socket.socket
) -> None:
    result = executor.run(stuck_daemon_train)
    assert result.timed_out and result.output is None
    assert processes_running(str(stuck_daemon_train.entrypoint)) == []
    assert nothing_connected(listener)


def test_double_forked_daemon_dies_with_the_session(
    executor: ProcessExecutor, daemon_session_train: Job, listener: socket.socket
) -> None:
    channel = executor.start(daemon_session_train)
    channel.send(b'{"op": "round"}')
    line = channel.receive(timeout=30)
    assert line is not None
    uid = json.loads(line)["uid"]
    assert processes_of(uid)  # the session is live
    channel.close()
    assert processes_of(uid) == []
    assert processes_running(str(daemon_session_train.entrypoint)) == []
    assert nothing_connected(listener)


# --- SIGKILL to the station ---------------------------------------------------------


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """Another process of the station, as a target."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def parricide_train(tmp_path: Path, bystander: subprocess.Popen[bytes]) -> Job:
    return hostile(
        tmp_path,
        """
        import signal
        report(
            parent=os.getppid(),
            kill_parent=attempt(lambda: os.kill(os.getppid(), signal.SIGKILL)),
            kill_init=attempt(lambda: os.kill(1, signal.SIGKILL)),
            kill_station=attempt(lambda: os.kill({station}, signal.SIGKILL)),
            kill_bystander=attempt(lambda: os.kill({bystander}, signal.SIGKILL)),
            kill_group=attempt(lambda: os.killpg({station}, signal.SIGKILL)),
            ptrace=attempt(lambda: open("/proc/1/mem", "rb").read(1)),
        )
        """,
        station=os.getpid(),
        bystander=bystander.pid,
    )


def test_train_cannot_signal_the_station_or_its_init(
    executor: ProcessExecutor,
    parricide_train: Job,
    bystander: subprocess.Popen[bytes],
) -> None:
    result = executor.run(parricide_train)
    got = found(result)
    assert result.returncode == 0
    assert got["parent"] == 1  # pid 1 of its own pid namespace
    for attempted in ("kill_parent", "kill_init", "kill_station", "kill_bystander"):
        assert got[attempted] in ("PermissionError", "ProcessLookupError"), attempted
    assert got["kill_group"] in ("PermissionError", "ProcessLookupError")
    assert got["ptrace"] in ("PermissionError", "FileNotFoundError")
    assert bystander.poll() is None


# --- a user namespace of its own (capabilities over new namespaces) ----------------


@pytest.fixture
def userns_train(tmp_path: Path) -> Job:
    return hostile(
        tmp_path,
        """
        import ctypes, threading
        libc = ctypes.CDLL(None, use_errno=True)

        def unshare(flags):
            if libc.unshare(flags) != 0:
                raise OSError(ctypes.get_errno(), "unshare")

        def clone_newuser():
            # raw clone(CLONE_NEWUSER | SIGCHLD): in the child return at once
            pid = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)
            if pid == 0:
                libc._exit(0)
            if pid < 0:
                raise OSError(ctypes.get_errno(), "clone")
            os.waitpid(pid, 0)

        worker = threading.Thread(target=lambda: None)
        worker.start()
        worker.join()
        report(
            userns=attempt(lambda: unshare(0x10000000)),
            netns=attempt(lambda: unshare(0x40000000)),
            clone=attempt(clone_newuser),
            fork=attempt(lambda: os.waitpid(os.fork() or os._exit(0), 0) and None),
            threads="ok",
            x32=attempt(lambda: libc.syscall(0x40000000 | 39) == -1 or 1 / 0),
        )
        """,
    )


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 syscall numbers")
def test_train_cannot_make_namespaces_of_its_own(
    executor: ProcessExecutor, userns_train: Job
) -> None:
    got = found(executor.run(userns_train))
    assert got["userns"] == got["netns"] == got["clone"] == "PermissionError"
    assert got["fork"] == "None" and got["threads"] == "ok"  # ordinary forks work
    assert got["x32"] == "True"  # x32 system calls fail


# --- output.json as a FIFO or a directory ----------------------------------------


@pytest.fixture
def fifo_output_train(tmp_path: Path) -> Job:
    return hostile(tmp_path, 'os.mkfifo(OUT / "output.json")\n')


@pytest.fixture
def directory_output_train(tmp_path: Path) -> Job:
    return hostile(tmp_path, 'os.mkdir(OUT / "output.json")\n')


def test_fifo_output_neither_blocks_nor_is_read(
    executor: ProcessExecutor, fifo_output_train: Job
) -> None:
    result = executor.run(fifo_output_train)
    assert result.returncode == 0 and result.output is None


def test_directory_output_is_refused_without_raising(
    executor: ProcessExecutor, directory_output_train: Job
) -> None:
    result = executor.run(directory_output_train)
    assert result.returncode == 0 and result.output is None


def test_read_output_reads_regular_files_only(tmp_path: Path) -> None:
    cases = {"fifo": os.mkfifo, "directory": os.mkdir}
    for name, make in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        make(folder / "output.json")
        assert read_output(folder, 1024) is None, name
    link = tmp_path / "link"
    link.mkdir()
    (tmp_path / "secret").write_text("{}")
    (link / "output.json").symlink_to(tmp_path / "secret")
    assert read_output(link, 1024) is None
    big = tmp_path / "big"
    big.mkdir()
    (big / "output.json").write_bytes(b" " * 2048)
    assert read_output(big, 1024) is None
    assert read_output(big, 2048) == b" " * 2048
    assert read_output(tmp_path / "missing", 1024) is None


# --- sessions, missing controls ---------------------------------------------------


@pytest.fixture
def echo_session_train(tmp_path: Path) -> Job:
    return hostile(
        tmp_path,
        """
        print("train stderr line", file=sys.stderr, flush=True)
        for line in sys.stdin:
            message = json.loads(line)
            if message.get("op") == "close":
                break
            print(json.dumps({"echo": message, "uid": os.getuid()}), flush=True)
        """,
    )


def test_sessions_speak_json_lines_from_inside_the_sandbox(
    executor: ProcessExecutor, echo_session_train: Job
) -> None:
    channel = executor.start(echo_session_train)
    for n in range(3):
        channel.send(json.dumps({"round": n}).encode())
        line = channel.receive(timeout=30)
        assert line is not None
        reply = json.loads(line)
        assert reply["echo"] == {"round": n}
        assert reply["uid"] in executors.SANDBOX_UIDS
    assert "train stderr line" in channel.close()


def test_this_machine_provides_every_control(executor: ProcessExecutor) -> None:
    assert executor.missing_controls() == ()


def test_missing_controls_refuse_unless_unsafe(
    root_train: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors, "controllers", lambda: {})
    monkeypatch.setattr(
        executors,
        "_probe",
        lambda python: {"user": True, "mountns": True, "pidns": True, "netns": False},
    )
    strict = ProcessExecutor()
    assert strict.missing_controls() == ("netns", "cgroup-memory", "cgroup-pids")
    with pytest.raises(ExecutorError, match="cannot provide the process sandbox"):
        strict.run(root_train)
    with pytest.raises(ExecutorError) as refused:
        strict.start(root_train)
    assert str(refused.value).startswith(MISSING_CONTROLS)
    got = found(ProcessExecutor(allow_unsafe=True).run(root_train))
    assert got["uid"] != 0 and got["rows"] == 21


def test_unsafe_mode_without_root_controls_still_applies_landlock(
    root_train: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors, "controllers", lambda: {})
    monkeypatch.setattr(executors, "_probe", lambda python: {})
    unsafe = ProcessExecutor(allow_unsafe=True)
    assert set(unsafe.missing_controls()) == set(executors.CONTROLS) - {"landlock"}
    got = found(unsafe.run(root_train))
    assert got["no_new_privs"] == "1"
    assert got["dataset_path"] == "PermissionError"  # Landlock: not on the allowlist
    assert stat.S_IMODE(os.stat(root_train.dataset).st_mode) == 0o600


def test_failed_setup_is_an_executor_error_and_leaves_nothing(
    executor: ProcessExecutor, tmp_path: Path
) -> None:
    job = hostile(tmp_path, "report(ran=True)\n")
    # a run folder inside the train's folder would sit on a read-only bind
    inside = job.entrypoint.parent / "run"
    (inside / "output").mkdir(parents=True)
    (inside / "input.json").write_text("{}")
    bad = Job(
        job.entrypoint,
        inside / "input.json",
        job.dataset,
        inside / "output",
        inside,
        job.limits,
    )
    with pytest.raises(ExecutorError, match="could not be set up"):
        executor.run(bad)
    assert processes_running(str(job.entrypoint)) == []
    assert not (inside / "output" / "output.json").exists()
    for controller in controllers().values():
        assert list(controller.parent.glob(f"pht-run-{os.getpid()}-*")) == []
