"""The process sandbox's init program (standard library only; run as a script).

The station starts ``python -I sandbox_init.py CONFIG_JSON`` as root. Three processes
come out of it::

    station
     └─ init (root)        joins the run's cgroups; unshares mount, network, pid, ipc,
         │                 uts and cgroup namespaces; builds the train's root file
         │                 system on a size-capped tmpfs and pivots into it; relays the
         │                 train's stderr (keeping only its tail); kills everything at
         │                 the deadline or when the station dies; copies a regular,
         │                 size-capped ``output.json`` out to the run folder
         └─ reaper (pid 1)  pid 1 of the new pid namespace: mounts its own /proc; when
             │              the train's main process ends it SIGKILLs every process of
             │              the namespace, so no daemon of the train survives
             └─ train       empties its capability bounding set, Landlock-confines
                            itself (no_new_privs), becomes the sandbox uid/gid with no
                            supplementary groups and no capabilities, sets rlimits,
                            installs a seccomp filter, closes every descriptor but stdio
                            and the dataset, and runs the entrypoint with runpy in this
                            already started interpreter (no second start-up)

The train's file system holds only: ``/usr`` and the top-level ``/bin``, ``/lib*``
links, the Python installation and import path, the ``pht`` package, the train's own
folder (all read-only, nosuid, nodev), ``/etc/ld.so.cache`` and ``/etc/localtime``,
two read-only ``/sys`` folders (CPU topology, transparent huge pages), ``/dev/null``,
``zero``, ``full``, ``random``, ``urandom``, a private ``/proc``, and on the tmpfs
``/tmp``, ``/dev/shm``, the run's work and output folders and a copy of the input file.
The station never sees a path the train controls: it reads the copied ``output.json``.

Setup failures are reported on the status descriptor as ``E<reason>``; ``K`` means the
train is about to run. ``--probe`` prints which controls this machine can provide.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import json
import os
import resource
import runpy
import select
import signal
import stat
import sys
import time
from typing import Any, NoReturn

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203}

STAGES = ("/tmp", "/mnt", "/var/tmp")
TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_READ = ("/usr",)
SYS_READ = ("/sys/devices/system/cpu", "/sys/kernel/mm/transparent_hugepage")
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
DEV_READ = ("/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
DEV_WRITE = ("/dev/null",)
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
SCRATCH = ("/tmp", "/dev/shm")
INPUT_CAP = 16 * 1024**2
TAIL = 16 * 1024
SETUP_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None,
        ),
        f"mount {target}",
    )


def _mount_data(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode(),
            ctypes.c_ulong(flags),
            data.encode(),
        ),
        f"mount {fstype} on {target}",
    )


def _prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _fail(status: int, where: str, exc: BaseException) -> NoReturn:
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    line = frame.tb_lineno if frame is not None else 0
    try:
        text = f"E{where} (line {line}): {type(exc).__name__}: {exc}"
        os.write(status, text[:2000].encode())
    finally:
        os._exit(SETUP_FAILED)


# --- the train's root file system -------------------------------------------------


def _python_paths() -> list[str]:
    """The interpreter's prefixes, import path and the ``pht`` package."""
    paths = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(sys.executable),
        *sys.path,
    ]
    spec = importlib.util.find_spec("pht")
    if spec is not None and spec.submodule_search_locations:
        paths.extend(spec.submodule_search_locations)
    return [p for p in paths if p and os.path.isabs(p)]


def _targets(paths: list[str]) -> dict[str, str]:
    """Mount target -> source (real path), without targets below another target."""
    wanted: dict[str, str] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        wanted.setdefault(real, real)
        wanted.setdefault(os.path.normpath(path), real)
    chosen: dict[str, str] = {}
    for target in sorted(wanted):
        if any(target == c or target.startswith(c.rstrip("/") + "/") for c in chosen):
            continue
        chosen[target] = wanted[target]
    return chosen


def _mountpoint(root: str, target: str, is_dir: bool) -> bool:
    """Create ``root + target`` (and parents) without following any symlink."""
    parts = [p for p in target.split("/") if p]
    current = root
    for i, part in enumerate(parts):
        current = current + "/" + part
        last = i == len(parts) - 1
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            if last and not is_dir:
                os.close(
                    os.open(current, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                )
            else:
                os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(info.st_mode):
            return False
        if not last and not stat.S_ISDIR(info.st_mode):
            return False
        if last and stat.S_ISDIR(info.st_mode) != is_dir:
            return False
    return True


class Plan:
    """What the init opens on the host before it leaves the host's mount namespace."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.links = [(p, os.readlink(p)) for p in TOP_LEVEL if os.path.islink(p)]
        read = [p for p in TOP_LEVEL if os.path.isdir(p) and not os.path.islink(p)]
        read += [*SYSTEM_READ, *_python_paths(), *cfg["binds"], *SYS_READ]
        self.binds = _targets(read)
        self.files = {p: p for p in (*ETC_FILES, *DEV_READ, *DEV_WRITE)}
        self.fds: dict[str, int] = {}
        self.is_dir: dict[str, bool] = {}
        with open(cfg["input_file"], "rb") as handle:
            self.input = handle.read(INPUT_CAP + 1)
        if len(self.input) > INPUT_CAP:
            raise ValueError("the input file is over its size cap")
        self.host_output = os.open(
            cfg["output_dir"], os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        )

    def open_sources(self) -> None:
        """Open every source (in the new mount namespace: binds must come from it)."""
        sources = set(self.binds.values()) | set(self.files.values())
        for source in sorted(sources):
            try:
                self.fds[source] = os.open(source, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            self.is_dir[source] = stat.S_ISDIR(os.fstat(self.fds[source]).st_mode)

    def read_paths(self) -> list[str]:
        """What the train may read (Landlock rules inside the new root)."""
        return [*self.binds, *ETC_FILES, *DEV_READ, "/proc"]


def _bind(fd: int, target: str, flags: int) -> None:
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def _build_root(cfg: dict[str, Any], plan: Plan) -> None:
    """Mount a tmpfs, fill it with read-only binds and the run folders, pivot into it."""
    stage = next(s for s in STAGES if os.path.isdir(s) and not os.path.islink(s))
    _mount_data(
        "tmpfs",
        stage,
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        f"size={cfg['work_bytes']},mode=0755",
    )
    for name, mode in (("/tmp", 0o1777), ("/dev", 0o755), ("/proc", 0o555)):
        os.mkdir(stage + name)
        os.chmod(stage + name, mode)
    os.mkdir(stage + "/dev/shm")
    os.chmod(stage + "/dev/shm", 0o1777)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{stage}/dev/{name}")
    for path, target in plan.links:
        os.symlink(target, stage + path)
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV
    for target, source in plan.binds.items():
        fd = plan.fds.get(source)
        if fd is not None and _mountpoint(stage, target, plan.is_dir[source]):
            _bind(fd, stage + target, ro)
    for target, source in plan.files.items():
        fd = plan.fds.get(source)
        if fd is None or not _mountpoint(stage, target, False):
            continue
        if target.startswith("/dev/"):
            flags = MS_NOSUID | MS_NOEXEC | (0 if target in DEV_WRITE else MS_RDONLY)
            _bind(fd, stage + target, flags)
        else:
            _bind(fd, stage + target, ro)
    uid, gid = cfg["uid"], cfg["gid"]
    for folder in (cfg["workdir"], cfg["output_dir"]):
        if not _mountpoint(stage, folder, True):
            raise OSError(errno.EINVAL, f"cannot create {folder} in the sandbox")
        if uid is not None:
            os.chown(stage + folder, uid, gid)
        os.chmod(stage + folder, 0o700)
    if not _mountpoint(stage, cfg["input_file"], False):
        raise OSError(errno.EINVAL, "cannot place the input file in the sandbox")
    fd = os.open(stage + cfg["input_file"], os.O_WRONLY | os.O_NOFOLLOW | os.O_TRUNC)
    try:
        os.write(fd, plan.input)
    finally:
        os.close(fd)
    os.chdir(stage)
    pivot = PIVOT_ROOT.get(os.uname().machine)
    if pivot is None:
        raise OSError(errno.ENOSYS, f"pivot_root unknown on {os.uname().machine}")
    _check(_libc.syscall(pivot, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


# --- the three processes --------------------------------------------------------


def _kill_descendants() -> None:
    """SIGKILL and reap all children (this process is a child subreaper)."""
    while True:
        children: list[int] = []
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as handle:
                    children += [int(p) for p in handle.read().split()]
            except OSError:
                continue
        if not children:
            try:
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:
                pass
            return
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)  # an unreaped child: its pid is ours
            except ProcessLookupError:
                pass
        for _ in children:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break


def _join_cgroups(procs_files: list[str]) -> None:
    """Be in every run cgroup before anything forks (the station usually moved us)."""
    with open("/proc/self/cgroup") as handle:
        mine = handle.read().split("\n")
    for procs in procs_files:
        name = os.path.basename(os.path.dirname(procs))
        if not any(line.endswith("/" + name) for line in mine):
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))


def _oom_score_adj(value: int) -> None:
    """Best effort: lowering the score needs CAP_SYS_RESOURCE, which root may lack."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(value))
    except OSError:
        pass


def _code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _reap(train: int, pidns: bool) -> int:
    """Wait for the train's main process, then kill and reap everything else."""
    code = 1
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == train:
            code = _code(status)
            break
    if pidns:
        while True:
            try:
                os.kill(-1, signal.SIGKILL)  # pid 1: every other process of the ns
            except ProcessLookupError:
                pass
            try:
                os.wait()
            except ChildProcessError:
                break
    else:
        _kill_descendants()
    return code


def _become_train(cfg: dict[str, Any], read: list[str], write: list[str]) -> None:
    """In the train's process: drop everything, then return to run the entrypoint."""
    os.setsid()
    os.chdir(cfg["workdir"])
    if cfg["cgroups"]:
        _oom_score_adj(0)
    if os.geteuid() == 0:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())  # noqa: SIM115
        for cap in range(last + 1):
            _prctl(PR_CAPBSET_DROP, cap)
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if cfg["landlock"]:
        landlock = _load(cfg["sandbox_module"])
        if not landlock.confine(read, write):
            raise OSError(errno.ENOSYS, "Landlock is not available")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    uid, gid = cfg["uid"], cfg["gid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # from root to non-root: clears all capabilities
        _prctl(PR_SET_DUMPABLE, 1)
    for name, value in cfg["rlimits"].items():
        limit = getattr(resource, name)
        resource.setrlimit(limit, (value, value))
    _load(cfg["seccomp_module"]).install()


_modules: dict[str, Any] = {}


def _load(path: str) -> Any:
    """A sibling module of this file, loaded by path (no package import)."""
    if path not in _modules:
        name = "_pht_" + os.path.basename(path).removesuffix(".py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[path] = module
    return _modules[path]


def _relay(
    pipe: int, child: int, deadline: float, station: int | None, pidns: bool
) -> int:
    """Keep the tail of the train's stderr in our stderr file; enforce the deadline."""
    tail = bytearray()
    seekable = True
    while True:
        left = deadline - time.monotonic()
        watched = [pipe] if station is None else [pipe, station]
        ready = select.select(watched, [], [], max(left, 0))[0] if left > 0 else []
        if not ready or station in ready:
            os.kill(child, signal.SIGKILL)  # deadline passed or the station is gone
            break
        chunk = os.read(pipe, 1 << 16)
        if not chunk:
            break
        if seekable:
            tail += chunk
            del tail[:-TAIL]
            try:
                os.pwrite(2, tail, 0)
                os.ftruncate(2, len(tail))
            except OSError:
                seekable = False
        else:
            try:
                os.write(2, chunk[-TAIL:])
            except OSError:
                pass
    status = os.waitpid(child, 0)[1]
    if not pidns:
        _kill_descendants()
    return _code(status)


def _copy_output(source_dir: int, host_dir: int, cap: int) -> None:
    """Copy a regular ``output.json`` of at most ``cap`` bytes to the run folder."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open("output.json", flags, dir_fd=source_dir)
    except OSError:
        return
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
            return
        data = b""
        while len(data) <= cap:
            chunk = os.read(fd, cap + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > cap:
        return
    out = os.open(
        "output.json",
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=host_dir,
    )
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]
    finally:
        os.close(out)


class Setup:
    """The init's side of a run: cgroups joined, namespaces made, root built."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        namespaces = set(cfg["namespaces"])
        os.umask(0o022)
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        station_pid = os.getppid()
        try:
            self.station: int | None = os.pidfd_open(station_pid)
        except OSError:
            self.station = None
        if os.getppid() != station_pid or station_pid == 1:
            os._exit(SETUP_FAILED)  # the station is gone already
        _join_cgroups(cfg["cgroups"])
        if cfg["cgroups"]:
            _oom_score_adj(-1000)  # the OOM killer picks the train, not the init
        if cfg["landlock"]:
            _load(cfg["sandbox_module"])
        _load(cfg["seccomp_module"])
        self.plan = Plan(cfg) if "mount" in namespaces else None
        self.output_dir: int | None = None
        flags = CLONE_NEWNET if "net" in namespaces else 0
        flags |= CLONE_NEWPID if "pid" in namespaces else 0
        if self.plan is not None:
            flags |= CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
            flags |= CLONE_NEWCGROUP if cfg["cgroups"] else 0
        if flags:
            _unshare(flags)
        if self.plan is not None:
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            _libc.sethostname(b"train", 5)
            self.plan.open_sources()
            _build_root(cfg, self.plan)
            for fd in self.plan.fds.values():
                os.close(fd)
            self.output_dir = os.open(
                cfg["output_dir"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
            )
            self.read = [*self.plan.read_paths(), cfg["input_file"]]
            self.write = [cfg["workdir"], cfg["output_dir"], *SCRATCH, *DEV_WRITE]
        else:
            if cfg["uid"] is not None:
                for folder in (cfg["workdir"], cfg["output_dir"]):
                    os.chown(folder, cfg["uid"], cfg["gid"])
            self.read = [
                *_targets([*TOP_LEVEL, *SYSTEM_READ, *_python_paths(), *cfg["binds"]]),
                *SYS_READ,
                *ETC_FILES,
                *DEV_READ,
                "/proc",
                cfg["input_file"],
            ]
            self.write = [cfg["workdir"], cfg["output_dir"], *DEV_WRITE]
        if "pid" not in namespaces:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)

    def held(self) -> list[int]:
        """Descriptors of the init that reach outside the sandbox."""
        fds = [self.station, self.output_dir]
        fds.append(self.plan.host_output if self.plan is not None else None)
        return [fd for fd in fds if fd is not None]


def main(argv: list[str]) -> bool:
    """Run the init; returns True only in the train's process (which then runs it)."""
    if argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
        return False
    cfg = json.loads(argv[1])
    status = cfg["status_fd"]
    os.set_inheritable(status, False)
    try:
        setup = Setup(cfg)
        stderr_r, stderr_w = os.pipe()
        alive_r, alive_w = os.pipe()
        reaper = os.fork()
    except Exception as exc:  # noqa: BLE001 - reported to the station, then exit
        _fail(status, "init", exc)
    if reaper == 0:
        os.close(stderr_r)
        os.close(alive_w)
        return _reaper(cfg, status, setup, stderr_w, alive_r)
    os.close(stderr_w)
    os.close(alive_r)
    os.close(status)
    os.dup2(setup.devnull, 0)
    os.dup2(setup.devnull, 1)
    deadline = time.monotonic() + cfg["timeout"]
    pidns = "pid" in cfg["namespaces"]
    code = _relay(stderr_r, reaper, deadline, setup.station, pidns)
    if setup.plan is not None and setup.output_dir is not None:
        try:
            _copy_output(setup.output_dir, setup.plan.host_output, cfg["output_bytes"])
        except OSError as exc:
            os.write(2, f"sandbox: output not copied: {exc}\n".encode())
    os._exit(code)


def _reaper(
    cfg: dict[str, Any], status: int, setup: Setup, stderr_w: int, alive_r: int
) -> bool:
    """Be pid 1 of the train's namespace; returns True only in the train's process."""
    pidns = "pid" in cfg["namespaces"]
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([alive_r], [], [], 0)[0]:
            os._exit(SETUP_FAILED)  # the init died before PDEATHSIG was armed
        os.close(alive_r)
        os.dup2(stderr_w, 2)
        os.close(stderr_w)
        for fd in setup.held():
            os.close(fd)  # the init's descriptors on the host: not for the train's tree
        if pidns:
            _mount_data(
                "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2"
            )
        else:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        train = os.fork()
    except Exception as exc:  # noqa: BLE001
        _fail(status, "reaper", exc)
    if train == 0:
        try:
            _become_train(cfg, setup.read, setup.write)
            low = 3
            for keep in sorted({cfg["data_fd"], status}):
                os.closerange(low, keep)
                low = keep + 1
            os.closerange(low, 1 << 20)
        except Exception as exc:  # noqa: BLE001
            _fail(status, "train", exc)
        os.write(status, b"K")
        os.close(status)
        return True
    os.close(status)
    os.dup2(setup.devnull, 0)
    os.dup2(setup.devnull, 1)
    os._exit(_reap(train, pidns))


# --- probing what this machine provides -------------------------------------------


def _try_in_child(action: Any) -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            action()
        except BaseException:  # noqa: BLE001
            os._exit(1)
        os._exit(0)
    return os.waitpid(pid, 0)[1] == 0


def _probe_user() -> None:
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)


def _probe_mount() -> None:
    _unshare(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    stage = next(s for s in STAGES if os.path.isdir(s) and not os.path.islink(s))
    _mount_data("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
    os.mkdir(stage + "/proc")


def _probe_pid() -> None:
    _probe_mount()
    _unshare(CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)
    stage = next(s for s in STAGES if os.path.isdir(s) and not os.path.islink(s))

    def mount_proc() -> None:
        _mount_data("proc", stage + "/proc", "proc", MS_NOSUID | MS_NODEV, "hidepid=2")

    if not _try_in_child(mount_proc):
        raise OSError(errno.EPERM, "proc cannot be mounted in a new pid namespace")


def probe() -> dict[str, bool]:
    """Which of the user, mount, pid and network controls work here (as root)."""
    if os.geteuid() != 0:
        return {"user": False, "mountns": False, "pidns": False, "netns": False}
    return {
        "user": _try_in_child(_probe_user),
        "mountns": _try_in_child(_probe_mount),
        "pidns": _try_in_child(_probe_pid),
        "netns": _try_in_child(lambda: _unshare(CLONE_NEWNET)),
    }


if __name__ == "__main__":
    if main(sys.argv):
        _train_cfg = json.loads(sys.argv[1])
        sys.argv = [_train_cfg["entrypoint"], *_train_cfg["args"]]
        sys.dont_write_bytecode = True
        del _train_cfg
        runpy.run_path(sys.argv[0], run_name="__main__")
