"""The train sandbox's seccomp filter allows sockets of family AF_UNIX only.

Where the sandbox has no network namespace of its own (a train inside a vantage6
node's container), this filter is what stops UDP, ICMP ping sockets, raw and netlink
sockets (Landlock stops TCP only): an outside attack sent a dataset's first rows
over UDP before it existed.
"""

from __future__ import annotations

import json
import os
import platform
import socket

import pytest

from pht.station import sandbox_seccomp

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or sandbox_seccomp.program(os.uname().machine) is None,
    reason="the filter exists for Linux on x86-64 and arm64",
)

CASES = {
    "unix": (socket.AF_UNIX, socket.SOCK_STREAM, 0),
    "tcp": (socket.AF_INET, socket.SOCK_STREAM, 0),
    "udp": (socket.AF_INET, socket.SOCK_DGRAM, 0),
    "udp6": (socket.AF_INET6, socket.SOCK_DGRAM, 0),
    "icmp": (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
    "netlink": (socket.AF_NETLINK, socket.SOCK_RAW, 0),
}


def _in_filtered_child() -> dict[str, str]:
    """Install the filter in a forked child and try every socket family there."""
    import ctypes

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read)
            ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            installed = sandbox_seccomp.install()
            out = {"installed": str(installed)}
            for name, (family, kind, proto) in CASES.items():
                try:
                    socket.socket(family, kind, proto).close()
                    out[name] = "allowed"
                except OSError as exc:
                    out[name] = f"errno {exc.errno}"
            a, b = socket.socketpair()
            a.close(), b.close()
            out["socketpair"] = "allowed"
            os.write(write, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_only_unix_sockets_under_the_filter() -> None:
    got = _in_filtered_child()
    if got["installed"] != "True":
        pytest.skip("the kernel has no seccomp filters")
    assert got["unix"] == got["socketpair"] == "allowed"
    for name in ("tcp", "udp", "udp6", "icmp", "netlink"):
        assert got[name] == "errno 1", (name, got)  # EPERM from the filter


def test_the_same_sockets_open_without_the_filter() -> None:
    """The check can fail: outside the filter these families open here."""
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
