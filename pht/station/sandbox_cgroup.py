"""Per-run cgroups: one memory cap and one task cap for a train's whole process tree.

RLIMIT_AS and RLIMIT_NPROC are per process and per user; a cgroup counts every process
and thread a train starts, however it forks. For each run the station creates a cgroup
under its own one, for each of the ``memory`` and ``pids`` controllers:

- cgroup v1 (a hierarchy of type ``cgroup`` that carries the controller):
  ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes`` where swap is
  accounted, so the cap cannot be dodged by swapping) and ``pids.max``;
- cgroup v2 (the unified hierarchy, when the controller is enabled there and not bound
  to a v1 hierarchy): ``memory.max``, ``memory.swap.max = 0``, ``pids.max``.

The sandbox's init joins the run's cgroups before it starts anything, so every process
of the train is inside. After the run :meth:`RunCgroup.close` kills what is left
(``cgroup.kill`` on v2; on v1 each listed process through a pidfd, re-checked to still
be a member so a recycled pid is never hit) and removes the cgroups.
:func:`controllers` says which controllers this machine can provide; the executor
refuses to run without them unless it is explicitly told to run unsafely.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids")
_PREFIX = "pht-run-"
_STATION = "pht-station-"
_counter = itertools.count()
_found: dict[str, Controller] | None = None


@dataclass(frozen=True)
class Controller:
    """Where runs get their cgroups for one controller."""

    name: str
    version: int
    parent: Path


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, fs type, super options) of each cgroup mount."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        point = fields[4].replace("\\040", " ")
        found.append((fields[3], point, rest[0], set(rest[2].split(","))))
    return found


def _own() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and ``""`` for v2."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            own[name] = path
    return own


def _join(point: str, root: str, path: str) -> Path:
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return Path(point) / path.lstrip("/")


def _usable(parent: Path) -> bool:
    probe = parent / f"{_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError:
        return False
    return True


def _find() -> dict[str, Controller]:
    mounts, own = _mounts(), _own()
    found: dict[str, Controller] = {}
    for name in CONTROLLERS:
        for root, point, kind, options in mounts:
            if kind == "cgroup" and name in options and name in own:
                parent = _join(point, root, own[name])
                if _usable(parent):
                    found[name] = Controller(name, 1, parent)
                break
    for root, point, kind, _ in mounts:
        if kind == "cgroup2" and "" in own:
            parent = _join(point, root, own[""])
            for name in _delegate(parent, [n for n in CONTROLLERS if n not in found]):
                found[name] = Controller(name, 2, parent)
            break
    return found


def _enable(parent: Path, names: list[str]) -> list[str]:
    enabled = []
    for name in names:
        try:
            (parent / "cgroup.subtree_control").write_text(f"+{name}")
        except OSError:
            continue
        enabled.append(name)
    return enabled


def _delegate(parent: Path, names: list[str]) -> list[str]:
    """Enable ``names`` for children of ``parent`` (v2); return those enabled.

    A v2 cgroup that holds processes cannot give controllers to children (the "no
    internal processes" rule; the root is exempt). Then the station moves itself into
    a leaf ``pht-station-<pid>`` beside the run cgroups, as systemd asks of services
    with ``Delegate=yes``; other processes in the same cgroup still block it.
    """
    try:
        offered = (parent / "cgroup.controllers").read_text().split()
    except OSError:
        return []
    names = [n for n in names if n in offered]
    if not names:
        return []
    enabled = _enable(parent, names)
    if len(enabled) < len(names):
        leaf = parent / f"{_STATION}{os.getpid()}"
        try:
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            log.info("cgroup v2 at %s cannot be delegated: %s", parent, exc)
            return [n for n in enabled if _usable(parent)]
        enabled += _enable(parent, [n for n in names if n not in enabled])
    return [n for n in enabled if _usable(parent)]


def controllers() -> dict[str, Controller]:
    """The usable controllers among ``memory`` and ``pids`` (found once per process)."""
    global _found
    if _found is None:
        _found = _find() if os.geteuid() == 0 else {}
        for controller in {c.parent: c for c in _found.values()}.values():
            _sweep(controller.parent)
    return dict(_found)


def _sweep(parent: Path) -> None:
    """Remove empty run cgroups left behind by station processes that have died."""
    for stale in [*parent.glob(f"{_PREFIX}*"), *parent.glob(f"{_STATION}*")]:
        try:
            pid = int(stale.name.split("-")[2])
        except (ValueError, IndexError):
            continue
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        try:
            stale.rmdir()
        except OSError:
            pass


def _write(path: Path, value: str, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError:
        if not optional:
            raise


class RunCgroup:
    """The cgroups of one run (one per hierarchy); the init writes its pid into each."""

    def __init__(self, memory_bytes: int, processes: int) -> None:
        name = f"{_PREFIX}{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
        self.dirs: list[Path] = []
        self.versions: list[int] = []
        self.controllers: tuple[str, ...] = ()
        found = controllers()
        try:
            for controller in {c.parent: c for c in found.values()}.values():
                path = controller.parent / name
                path.mkdir()
                self.dirs.append(path)
                self.versions.append(controller.version)
            for controller in found.values():
                path = controller.parent / name
                self._limit(controller, path, memory_bytes, processes)
        except OSError:
            self.close()
            raise
        self.controllers = tuple(sorted(found))

    @staticmethod
    def _limit(
        controller: Controller, path: Path, memory_bytes: int, processes: int
    ) -> None:
        if controller.name == "pids":
            _write(path / "pids.max", str(processes))
        elif controller.version == 1:
            _write(path / "memory.limit_in_bytes", str(memory_bytes))
            _write(path / "memory.memsw.limit_in_bytes", str(memory_bytes), True)
            _write(path / "memory.swappiness", "0", True)
        else:
            _write(path / "memory.max", str(memory_bytes))
            _write(path / "memory.swap.max", "0", True)

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the init writes its pid into."""
        return [str(path / "cgroup.procs") for path in self.dirs]

    def attach(self, pid: int) -> None:
        """Move ``pid`` into the run's cgroups (the init checks before it forks)."""
        for procs in self.procs_files:
            _write(Path(procs), str(pid))

    def _members(self) -> set[int]:
        members: set[int] = set()
        for path in self.dirs:
            try:
                text = (path / "cgroup.procs").read_text()
            except OSError:
                continue
            members.update(int(pid) for pid in text.split())
        return members

    def kill(self) -> None:
        """SIGKILL every process still in the run's cgroups."""
        for path, version in zip(self.dirs, self.versions, strict=True):
            if version == 2 and (path / "cgroup.kill").exists():
                _write(path / "cgroup.kill", "1", True)
        for _ in range(100):
            members = self._members()
            if not members:
                return
            for pid in members:
                _kill_member(pid, self)
            time.sleep(0.001)

    def close(self) -> None:
        """Kill what is left and remove the cgroups (waits up to ~2 s for exits)."""
        self.kill()
        deadline = time.monotonic() + 2.0
        for path in list(self.dirs):
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("cgroup %s could not be removed: %s", path, exc)
                        break
                    self.kill()
                    time.sleep(0.002)
        self.dirs = []


def _kill_member(pid: int, group: RunCgroup) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        if pid in group._members():  # still the same process: it is pinned by pidfd
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(pidfd)
