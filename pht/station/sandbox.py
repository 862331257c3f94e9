"""Landlock confinement of a train process (filesystem, TCP, signals, abstract sockets).

:func:`confine` runs in the train's process just before the train's code: it sets
``no_new_privs`` and restricts the process and everything it starts to

- reading (and executing) only the paths in ``read`` and writing only those in
  ``write`` (Landlock ABI 1; ``refer`` from ABI 2, ``truncate`` from ABI 3, device
  ``ioctl`` from ABI 5 are handled too, so they are denied outside ``write``);
- no TCP ``bind``/``connect`` at all (ABI 4 and newer);
- no signals to, and no abstract unix sockets of, processes outside its own Landlock
  domain (ABI 6 and newer): the station and the sandbox's init are out of reach.

On kernels without a feature the corresponding restriction is simply not applied;
:func:`available` gives the ABI version (0: no Landlock). This module uses only the
standard library because the sandbox's init program loads it by file path.

References: Linux ``Documentation/userspace-api/landlock.rst``.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_MAKE_CHAR, _MAKE_BLOCK = 1 << 6, 1 << 11
_ABI1_ALL = (1 << 13) - 1  # execute .. make_sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | _TRUNCATE | _IOCTL_DEV
READ = EXECUTE | READ_FILE | READ_DIR
# writable folders: everything but executing files and making device nodes
_WRITE_DENIED = EXECUTE | _MAKE_CHAR | _MAKE_BLOCK | _IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def available() -> int:
    """The Landlock ABI version of this kernel (0 if none)."""
    try:
        version = _libc().syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except (AttributeError, OSError):
        return 0
    return max(int(version), 0)


def features(abi: int) -> tuple[str, ...]:
    """What :func:`confine` enforces on a kernel with Landlock ABI ``abi``."""
    names = []
    if abi >= 1:
        names.append("filesystem")
    if abi >= 4:
        names.append("tcp")
    if abi >= 6:
        names.append("signal-and-abstract-socket-scope")
    return tuple(names)


def confine(read: Iterable[str], write: Iterable[str]) -> bool:
    """Restrict this process to reading ``read`` and writing ``write``.

    Entries may be folders (the rule covers everything beneath) or files. Also denies
    all TCP bind/connect (ABI >= 4) and signals and abstract unix sockets across the
    Landlock domain (ABI >= 6). Returns False (unconfined) when the kernel has no
    Landlock.
    """
    abi = available()
    if abi < 1:
        return False
    libc = _libc()
    handled = (
        _ABI1_ALL
        | (_REFER if abi >= 2 else 0)
        | (_TRUNCATE if abi >= 3 else 0)
        | (_IOCTL_DEV if abi >= 5 else 0)
    )
    attr = _RulesetAttr(
        handled,
        (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
        (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for paths, access in ((read, READ), (write, handled & ~_WRITE_DENIED)):
            for path in paths:
                _allow(libc, ruleset, path, access & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return True


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist needs no rule
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS
        rule = _PathBeneath(access, fd)
        if libc.syscall(
            _SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0
        ):
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)
