"""A small seccomp filter for train processes (standard library only).

Defence in depth under the namespaces, the unprivileged uid and Landlock: it shrinks the
kernel surface a hostile train can reach without changing what an honest train does.
Denied with ``EPERM``:

- creating or entering namespaces: ``unshare``, ``setns``, and ``clone`` with any
  ``CLONE_NEW*`` flag (an unprivileged user namespace would hand the train a full
  capability set over new namespaces); ``clone3`` answers ``ENOSYS`` because its flags
  sit behind a pointer a filter cannot read, so the C library falls back to ``clone``;
- kernel interfaces honest trains never use: ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring_*``, ``keyctl``/``add_key``/``request_key``, ``ptrace``,
  ``process_vm_readv``/``writev``, ``open_by_handle_at``/``name_to_handle_at``;
- what needs privileges anyway: mounts (old and new API), ``pivot_root``, ``chroot``,
  modules, ``kexec``, ``reboot``, ``swapon``/``swapoff``, ``acct``, ``syslog``;
- on x86-64, every x32-ABI system call (they would bypass the numbers above);
- ``socket`` of any family but ``AF_UNIX``: no TCP, UDP, ICMP ("ping" sockets),
  raw, packet or netlink sockets, even where the sandbox has no network namespace of
  its own (a train inside a vantage6 node's container: there Landlock stops TCP
  only, and Docker's ``ping_group_range`` lets any group open ICMP sockets).

A process of another architecture than the filter's is killed. The filter exists for
x86-64 and arm64; :func:`install` returns False elsewhere. It runs in the train's own
process after ``no_new_privs``; the sandbox's init loads this file by path. A kernel
without seccomp filters (``EINVAL``) leaves the process unfiltered.
"""

from __future__ import annotations

import ctypes
import errno
import os

_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_CLONE_NEW_ANY = (
    0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
)
_X32_BIT = 0x40000000
_AF_UNIX = 1

# (audit arch, {name: number}) per machine
_TABLES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "clone": 56, "clone3": 435, "unshare": 272, "setns": 308, "bpf": 321,
            "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
            "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250,
            "add_key": 248, "request_key": 249, "ptrace": 101,
            "process_vm_readv": 310, "process_vm_writev": 311,
            "open_by_handle_at": 304, "name_to_handle_at": 303, "mount": 165,
            "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428,
            "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
            "fspick": 433, "mount_setattr": 442, "init_module": 175,
            "finit_module": 313, "delete_module": 176, "kexec_load": 246,
            "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
            "acct": 163, "syslog": 103, "socket": 41,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "clone": 220, "clone3": 435, "unshare": 97, "setns": 268, "bpf": 280,
            "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
            "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219,
            "add_key": 217, "request_key": 218, "ptrace": 117,
            "process_vm_readv": 270, "process_vm_writev": 271,
            "open_by_handle_at": 265, "name_to_handle_at": 264, "mount": 40,
            "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428,
            "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
            "fspick": 433, "mount_setattr": 442, "init_module": 105,
            "finit_module": 273, "delete_module": 106, "kexec_load": 104,
            "kexec_file_load": 294, "reboot": 142, "swapon": 224, "swapoff": 225,
            "acct": 89, "syslog": 116, "socket": 198,
        },
    ),
}  # fmt: skip


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def program(machine: str) -> list[tuple[int, int, int, int]] | None:
    """The BPF program for ``machine`` as (code, jt, jf, k), or None if unknown."""
    if machine not in _TABLES:
        return None
    arch, numbers = _TABLES[machine]
    eperm, enosys = _ERRNO | errno.EPERM, _ERRNO | errno.ENOSYS
    code = [
        (_LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, _KILL_PROCESS),
        (_LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        code += [(_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, eperm)]
    code += [(_JEQ, 0, 1, numbers["clone3"]), (_RET, 0, 0, enosys)]
    for name, number in sorted(numbers.items()):
        if name not in ("clone", "clone3", "socket"):
            code += [(_JEQ, 0, 1, number), (_RET, 0, 0, eperm)]
    code += [
        (_JEQ, 0, 4, numbers["clone"]),
        (_LD_ABS_W, 0, 0, 16),  # low half of args[0], the flags
        (_JSET, 0, 1, _CLONE_NEW_ANY),
        (_RET, 0, 0, eperm),
        (_RET, 0, 0, _ALLOW),
        # the accumulator still holds the number here (reached from the first jump)
        (_JEQ, 0, 3, numbers["socket"]),
        (_LD_ABS_W, 0, 0, 16),  # low half of args[0], the address family
        (_JEQ, 1, 0, _AF_UNIX),
        (_RET, 0, 0, eperm),
        (_RET, 0, 0, _ALLOW),
    ]
    return code


def install() -> bool:
    """Install the filter on this process (and its future children)."""
    code = program(os.uname().machine)
    if code is None:
        return False
    filters = (_Filter * len(code))(*(_Filter(*op) for op in code))
    prog = _Program(len(code), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0):
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # a kernel built without seccomp filters
            return False
        raise OSError(err, "prctl(PR_SET_SECCOMP) failed")
    return True
