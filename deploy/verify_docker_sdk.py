"""Check, with the docker Python SDK, which hardening options work on this engine.

Run:  .venv/bin/python deploy/verify_docker_sdk.py [--image pht/train-poc:0.1]
      [--base pht/base:bookworm-py311] [--rounds 200] [--json out.json]

Needs a running engine (deploy/docker-engine.sh), the images from
deploy/build-base-image.sh and deploy/poc/build.sh, root (for the host tmpfs
output test) and `pip install docker`. Prints one line per check and a JSON
report; exits non-zero if a check that the executor relies on fails.

Everything is run by image *ID* (not tag), as the executor will.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import docker
import docker.errors
import requests

TRAIN_UID = 10001
LABEL = {"org.pht.verify": "1"}

REPORT: dict = {"checks": {}, "timings": {}}
IDLE = ["python3", "-c", "import signal; signal.pause()"]


def py(code: str) -> dict:
    """Run `python3 -c code` instead of the image's entrypoint. (A non-empty
    entrypoint also stops the image's CMD from being appended.)"""
    return {"entrypoint": ["python3", "-c", code]}


FAILED: list[str] = []


def record(name: str, ok: bool, detail: object = "", required: bool = True) -> None:
    REPORT["checks"][name] = {"ok": ok, "detail": detail}
    mark = "ok  " if ok else ("FAIL" if required else "no  ")
    text = detail if isinstance(detail, str) else json.dumps(detail)
    print(f"[{mark}] {name}: {text[:300]}", flush=True)
    if required and not ok:
        FAILED.append(name)


def hardened(data_file: Path, **extra) -> dict:
    """The full option set the executor should use (everything verified below)."""
    opts = dict(
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],  # default seccomp profile stays on
        user=f"{TRAIN_UID}:{TRAIN_UID}",
        pids_limit=64,
        mem_limit="512m",
        memswap_limit="512m",  # = mem_limit: no swap on top
        nano_cpus=1_000_000_000,  # 1 CPU
        tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},
        mounts=[
            docker.types.Mount(
                target="/input/data.parquet",
                source=str(data_file),
                type="bind",
                read_only=True,
            )
        ],
        ipc_mode="none",
        init=True,  # docker-init as PID 1: reaps zombies, forwards SIGTERM
        # stdout/stderr land on the host disk (json-file); bound it. For a
        # long-lived attach session that carries results, prefer type="none".
        log_config=docker.types.LogConfig(
            type="json-file", config={"max-size": "1m", "max-file": "1"}
        ),
        labels=LABEL,
        environment={},
        detach=True,
    )
    opts.update(extra)
    return opts


def run_once(client, image_id: str, command, timeout: float = 60, **opts):
    """create+start, wait with timeout (kill on timeout), logs, remove. Returns
    (exit_code, stdout, stderr, state, seconds)."""
    t0 = time.perf_counter()
    c = client.containers.create(image_id, command=command, **opts)
    try:
        c.start()
        try:
            res = c.wait(timeout=timeout)
            code = res["StatusCode"]
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            c.kill()
            c.wait(timeout=10)
            code = "timeout"
        out = c.logs(stdout=True, stderr=False).decode(errors="replace")
        err = c.logs(stdout=False, stderr=True).decode(errors="replace")
        c.reload()
        state = c.attrs["State"]
    finally:
        c.remove(force=True)
    return code, out, err, state, time.perf_counter() - t0


def make_data(tmp: Path) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 2000
    df = pd.DataFrame(
        {
            "age": rng.normal(62, 11, n),
            "os_days": rng.exponential(700, n),
            "death": rng.integers(0, 2, n),
            "regimen": rng.choice(["A", "B"], n),
        }
    )
    p = tmp / "data.parquet"
    df.to_parquet(p)
    p.chmod(0o644)  # the train (uid 10001) must be able to read it
    return p


# --------------------------------------------------------------------------- checks


def check_security_state(client, img, data):
    code, out, err, state, secs = run_once(
        client,
        img,
        ["probe"],
        **hardened(
            data, tmpfs={"/tmp": "rw,noexec,nosuid,size=64m", "/output": "rw,size=1m"}
        ),
    )
    if code != 0:
        record("hardened_run", False, f"exit {code}: {err[-300:]}")
        return
    p = json.loads(out.strip().splitlines()[-1])
    st = p["status"]
    REPORT["probe"] = p
    record("hardened_run", True, f"{secs:.2f}s")
    record(
        "seccomp_filter_mode_2",
        st.get("Seccomp") == "2",
        f"Seccomp: {st.get('Seccomp')}",
    )
    record(
        "no_new_privs",
        st.get("NoNewPrivs") == "1",
        f"NoNewPrivs: {st.get('NoNewPrivs')}",
    )
    record(
        "cap_eff_zero",
        st.get("CapEff") == "0000000000000000",
        f"CapEff: {st.get('CapEff')}, CapBnd: {st.get('CapBnd')}",
    )
    uid = st.get("Uid", "").split()
    record(
        "non_root_uid",
        bool(uid) and all(u == str(TRAIN_UID) for u in uid),
        f"Uid: {st.get('Uid')} Gid: {st.get('Gid')}",
    )
    ck = p["checks"]
    record(
        "network_none_blocks_connect",
        ck["network_connect"].startswith("denied"),
        f"{ck['network_connect']}; ifaces={p['net_ifaces']}",
    )
    record(
        "read_only_rootfs", ck["write_rootfs"].startswith("denied"), ck["write_rootfs"]
    )
    record("ro_bind_input", ck["write_input"].startswith("denied"), ck["write_input"])
    record("tmpfs_tmp_writable", ck["write_tmp"] == "allowed", ck["write_tmp"])
    record(
        "tmpfs_tmp_noexec",
        ck["exec_from_tmp"].startswith("denied"),
        ck["exec_from_tmp"],
    )
    record("pids_limit_applied", p["pids_max"] == "64", f"pids.max={p['pids_max']}")
    record(
        "mem_limit_applied",
        p["mem_limit"] == str(512 * 2**20),
        f"memory.limit_in_bytes={p['mem_limit']}",
    )
    record(
        "nano_cpus_applied",
        p["cpu"] == "100000",
        f"cpu.cfs_quota_us={p['cpu']} (period 100000)",
    )


def check_each_option(client, img, data):
    """Each option alone, so a rejection names the culprit."""
    base = dict(detach=True, labels=LABEL)
    variants = {
        "opt_network_mode_none": dict(network_mode="none"),
        "opt_read_only": dict(read_only=True),
        "opt_cap_drop_all": dict(cap_drop=["ALL"]),
        "opt_no_new_privileges": dict(security_opt=["no-new-privileges"]),
        "opt_user": dict(user=f"{TRAIN_UID}:{TRAIN_UID}"),
        "opt_pids_limit": dict(pids_limit=64),
        "opt_mem_limit": dict(mem_limit="256m", memswap_limit="256m"),
        "opt_nano_cpus": dict(nano_cpus=500_000_000),
        "opt_tmpfs_tmp": dict(tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"}),
        "opt_tmpfs_nr_inodes": dict(
            tmpfs={"/output": "rw,size=1m,nr_inodes=16,uid=10001,gid=10001,mode=0700"}
        ),
        "opt_ro_bind_file": dict(
            mounts=[
                docker.types.Mount(
                    "/input/data.parquet", str(data), type="bind", read_only=True
                )
            ]
        ),
        "opt_ipc_none": dict(ipc_mode="none"),
        "opt_init": dict(init=True),
        "opt_seccomp_default": dict(),  # nothing given = default profile
    }
    for name, extra in variants.items():
        try:
            code, out, err, _, secs = run_once(
                client, img, None, **py("print('x')"), **base, **extra
            )
            record(name, code == 0, f"exit {code} in {secs:.2f}s {err[-200:]}")
        except docker.errors.APIError as e:
            record(name, False, f"rejected: {e.explanation}")
    # storage_opt size only works on overlay2 over xfs with pquota: expected to fail here
    try:
        code, *_ = run_once(
            client, img, None, **py("pass"), storage_opt={"size": "64m"}, **base
        )
        record("opt_storage_opt_size", code == 0, f"exit {code}", required=False)
    except docker.errors.APIError as e:
        record(
            "opt_storage_opt_size",
            False,
            f"rejected (expected on ext4): {e.explanation}",
            required=False,
        )


def check_limits_bite(client, img, data):
    # pids: start 200 threads with pids_limit=32
    code, out, err, _, _ = run_once(
        client,
        img,
        None,
        **py(
            "import threading,time\nn=0\ntry:\n for i in range(200):\n  threading.Thread(target=time.sleep,args=(5,),daemon=True).start(); n+=1\nexcept RuntimeError as e: print('stopped at',n,e)\nelse: print('started',n)"
        ),
        **hardened(data, pids_limit=32),
    )
    record("pids_limit_enforced", "stopped at" in out, out.strip() or err[-200:])
    # memory: allocate 1 GiB under a 256m limit -> OOM kill
    code, out, err, state, _ = run_once(
        client,
        img,
        None,
        **py("b=bytearray(1<<30); b[::4096]=b'x'*len(b[::4096]); print('survived')"),
        **hardened(data, mem_limit="256m", memswap_limit="256m"),
    )
    record(
        "mem_limit_enforced_oomkill",
        code == 137 and state.get("OOMKilled") is True,
        f"exit {code}, OOMKilled={state.get('OOMKilled')}",
    )
    # cpu: a busy loop for 2 s wall under nano_cpus=0.5 CPU gets ~1 s of CPU
    code, out, err, _, _ = run_once(
        client,
        img,
        None,
        **py(
            "import time,os\nt=time.time()\nwhile time.time()-t<2: pass\nprint(os.times().user+os.times().system)"
        ),
        **hardened(data, nano_cpus=500_000_000),
    )
    try:
        cpu = float(out.strip())
        record(
            "nano_cpus_enforced", cpu < 1.4, f"{cpu:.2f} CPU-s in 2 s wall at 0.5 CPU"
        )
    except ValueError:
        record("nano_cpus_enforced", False, err[-200:])
    # timeout + kill
    code, out, err, state, secs = run_once(
        client,
        img,
        None,
        **py("import time; time.sleep(600)"),
        timeout=2,
        **hardened(data),
    )
    record(
        "timeout_kill_remove",
        code == "timeout",
        f"killed after wait(timeout=2); total {secs:.2f}s, exit {state.get('ExitCode')}",
    )
    # unreadable data file: a 0600 root file cannot be read by uid 10001
    bad = data.parent / "secret.parquet"
    shutil.copy(data, bad)
    bad.chmod(0o600)
    code, out, err, _, _ = run_once(
        client,
        img,
        ["run"],
        **hardened(
            data,
            mounts=[
                docker.types.Mount(
                    "/input/data.parquet", str(bad), type="bind", read_only=True
                )
            ],
            tmpfs={"/tmp": "size=8m", "/output": "size=1m"},
        ),
    )
    record(
        "gotcha_0600_input_unreadable",
        code != 0 and "Permission" in err,
        f"exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}",
        required=False,
    )
    # cleanup: nothing with our label must remain
    left = client.containers.list(all=True, filters={"label": "org.pht.verify=1"})
    record("removed_afterwards", not left, f"{len(left)} containers left")


def _tar_members(stream) -> dict:
    buf = io.BytesIO(b"".join(stream))
    with tarfile.open(fileobj=buf) as tf:
        return {
            m.name: (tf.extractfile(m).read() if m.isfile() else None)
            for m in tf.getmembers()
        }


def check_output_dir(client, img, data, tmp: Path):
    out_opts = (
        "rw,size=1m,nr_inodes=16,uid=10001,gid=10001,mode=0700,noexec,nosuid,nodev"
    )
    # A) tmpfs /output, train is PID 1: after it exits, the tmpfs is gone
    c = client.containers.create(
        img, ["run"], **hardened(data, tmpfs={"/tmp": "size=8m", "/output": out_opts})
    )
    try:
        c.start()
        c.wait(timeout=60)
        try:
            files = _tar_members(c.get_archive("/output")[0])
            got = [n for n, v in files.items() if v]
        except docker.errors.APIError as e:
            got = f"error {e.explanation}"
        record(
            "output_tmpfs_after_exit_lost",
            got == [],
            f"get_archive after exit -> {got}",
            required=False,
        )
    finally:
        c.remove(force=True)

    # B) tmpfs /output, idle PID 1 + exec_run of the train, then get_archive while running
    t0 = time.perf_counter()
    c = client.containers.create(
        img,
        None,
        entrypoint=IDLE,
        **hardened(data, tmpfs={"/tmp": "size=8m", "/output": out_opts}),
    )
    try:
        c.start()
        r = c.exec_run(
            ["/opt/venv/bin/python", "-I", "/opt/train/entrypoint.py", "run"],
            user=f"{TRAIN_UID}:{TRAIN_UID}",
        )
        # get_archive (= docker cp) reads the container's rootfs from the daemon's
        # side and sees the empty directory UNDER the tmpfs (moby#22020): no good.
        files = _tar_members(c.get_archive("/output")[0])
        seen = [n for n, v in files.items() if v]
        record(
            "output_tmpfs_get_archive_while_running",
            bool(seen),
            f"exec exit {r.exit_code}, get_archive sees files {seen} (docker cp cannot read tmpfs)",
            required=False,
        )
        # what works: stream a tar out through exec (stdout only, demuxed)
        t1 = time.perf_counter()
        r2 = c.exec_run(["tar", "-C", "/output", "-cf", "-", "."], demux=True)
        files = _tar_members([r2.output[0] or b""])
        ok = r.exit_code == 0 and r2.exit_code == 0 and bool(files.get("./result.json"))
        record(
            "output_tmpfs_exec_tar_out",
            ok,
            f"exec tar exit {r2.exit_code}, files {sorted(files)}, tar-out {time.perf_counter() - t1:.3f}s, "
            f"idle-container+exec train+collect {time.perf_counter() - t0:.2f}s",
        )
        # caps on that tmpfs: size and file count
        r = c.exec_run(
            ["python3", "-c", "open('/output/big','wb').write(b'x'*(2<<20))"]
        )
        record(
            "output_tmpfs_size_cap",
            r.exit_code != 0 and b"No space left" in r.output,
            r.output.decode(errors="replace").strip().splitlines()[-1]
            if r.output
            else f"exit {r.exit_code}",
        )
        r = c.exec_run(
            [
                "python3",
                "-c",
                "import os\nn=0\ntry:\n for i in range(100): open(f'/output/f{i}','w').close(); n+=1\nexcept OSError as e: print(n, e)",
            ]
        )
        record(
            "output_tmpfs_nr_inodes_cap",
            b"No space left" in r.output,
            r.output.decode().strip(),
        )
    finally:
        c.kill()
        c.remove(force=True)

    # C) host-side tmpfs (size + nr_inodes) bind-mounted as /output: survives exit
    outdir = tmp / "out-hosttmpfs"
    outdir.mkdir()
    try:
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size=1m,nr_inodes=16,uid={TRAIN_UID},gid={TRAIN_UID},mode=0700,noexec,nosuid,nodev",
                "tmpfs",
                str(outdir),
            ],
            check=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        record(
            "output_host_tmpfs_bind", False, f"host mount failed: {e}", required=False
        )
        return
    try:
        mounts = [
            docker.types.Mount(
                "/input/data.parquet", str(data), type="bind", read_only=True
            ),
            docker.types.Mount("/output", str(outdir), type="bind", read_only=False),
        ]
        code, out, err, _, secs = run_once(
            client, img, ["run"], **hardened(data, mounts=mounts)
        )
        present = sorted(os.listdir(outdir))
        record(
            "output_host_tmpfs_bind",
            code == 0 and "result.json" in present,
            f"exit {code}, host sees {present} after exit, {secs:.2f}s",
        )
        code, out, err, _, _ = run_once(
            client,
            img,
            None,
            **py(
                "import os\nn=0\ntry:\n for i in range(100): open(f'/output/f{i}','w').close(); n+=1\nexcept OSError as e: print(n, e)"
            ),
            **hardened(data, mounts=mounts),
        )
        record("output_host_tmpfs_nr_inodes_cap", "No space left" in out, out.strip())
    finally:
        subprocess.run(["umount", str(outdir)], check=False)


def check_timings(client, base_img, img, data, n: int = 10):
    def bench(label, image, cmd, **opts):
        times = []
        for _ in range(n):
            code, out, err, _, secs = run_once(client, image, cmd, **opts)
            assert code == 0, (label, code, err)
            times.append(secs)
        REPORT["timings"][label] = {
            "n": n,
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
        }
        print(
            f"[time] {label}: median {statistics.median(times):.3f}s (min {min(times):.3f}, max {max(times):.3f}, n={n})",
            flush=True,
        )

    bench(
        "trivial_python_plain",
        base_img,
        ["python3", "-c", "pass"],
        detach=True,
        labels=LABEL,
    )
    bench(
        "trivial_python_hardened", base_img, ["python3", "-c", "pass"], **hardened(data)
    )
    bench(
        "poc_train_run_hardened",
        img,
        ["run"],
        **hardened(
            data, tmpfs={"/tmp": "size=8m", "/output": "size=1m,uid=10001,gid=10001"}
        ),
    )
    # exec_run into an already running hardened container
    c = client.containers.create(img, None, entrypoint=IDLE, **hardened(data))
    try:
        c.start()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.exec_run(["python3", "-c", "pass"])
            assert r.exit_code == 0
            times.append(time.perf_counter() - t0)
        REPORT["timings"]["exec_run_trivial_python"] = {
            "n": n,
            "median_s": round(statistics.median(times), 3),
        }
        print(
            f"[time] exec_run_trivial_python: median {statistics.median(times):.3f}s",
            flush=True,
        )
    finally:
        c.kill()
        c.remove(force=True)


# ------------------------------------------------------------------ long-lived rounds


class AttachedSession:
    """A long-lived container spoken to over its stdin/stdout (docker attach).

    Without a TTY the engine multiplexes stdout/stderr in frames: 8-byte header
    (stream, 0, 0, 0, big-endian length) + payload.
    """

    def __init__(self, client, image_id, opts, argv):
        # detach=False makes the SDK set StdinOnce=true: then closing our write
        # side (shutdown(SHUT_WR)) delivers EOF to the container's stdin. With
        # detach=True (StdinOnce=false) stdin stays open after we hang up.
        opts = {**opts, "detach": False}
        self.c = client.containers.create(
            image_id, argv, stdin_open=True, tty=False, **opts
        )
        # attach BEFORE start so no output is lost
        self.s = self.c.attach_socket(
            params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        self.sock: socket.socket = self.s._sock
        self.buf = {1: b"", 2: b""}
        self.raw = b""
        self.c.start()

    def _fill(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no response in time")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("container closed the stream")
                self.raw += chunk
                while len(self.raw) >= 8:
                    stream, size = self.raw[0], struct.unpack(">I", self.raw[4:8])[0]
                    if len(self.raw) < 8 + size:
                        break
                    self.buf[stream] = (
                        self.buf.get(stream, b"") + self.raw[8 : 8 + size]
                    )
                    self.raw = self.raw[8 + size :]
                return

    def readline(self, timeout=30.0) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf[1]:
            self._fill(deadline)
        line, self.buf[1] = self.buf[1].split(b"\n", 1)
        return json.loads(line)

    def request(self, obj, timeout=30.0) -> dict:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")
        return self.readline(timeout)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)  # EOF on the container's stdin
        except OSError:
            pass
        try:
            self.c.wait(timeout=10)
        except Exception:
            self.c.kill()
        self.sock.close()
        self.c.remove(force=True)


def check_rounds(client, img, data, tmp: Path, rounds: int):
    # --- A) attach to stdin/stdout
    t0 = time.perf_counter()
    sess = AttachedSession(client, img, hardened(data), ["serve-stdio"])
    try:
        ready = sess.readline(timeout=60)
        t_ready = time.perf_counter() - t0
        lat = []
        for i in range(rounds):
            t1 = time.perf_counter()
            resp = sess.request({"op": "echo", "i": i})
            lat.append(time.perf_counter() - t1)
            assert resp["echo"]["i"] == i
        work = []
        for _ in range(20):
            t1 = time.perf_counter()
            s = sess.request({"op": "summary"})
            tt = sess.request({"op": "ttest", "column": "age", "group": "regimen"})
            work.append(time.perf_counter() - t1)
        REPORT["timings"]["rounds_attach_summary_plus_ttest_ms"] = round(
            statistics.median(work) * 1e3, 3
        )
        print(
            f"[time] attach round summary+ttest on 2000 rows: median {statistics.median(work) * 1e3:.1f} ms",
            flush=True,
        )
        bad = sess.request({"op": "nope"})
        record(
            "rounds_attach_stdio",
            ready.get("ready") and s["ok"] and tt["ok"] and not bad["ok"],
            f"ready after {t_ready:.2f}s; echo round-trip median {statistics.median(lat) * 1e3:.2f} ms, "
            f"p95 {sorted(lat)[int(0.95 * len(lat))] * 1e3:.2f} ms over {rounds}",
        )
        REPORT["timings"]["rounds_attach_stdio"] = {
            "ready_s": round(t_ready, 3),
            "rounds": rounds,
            "median_ms": round(statistics.median(lat) * 1e3, 3),
            "p95_ms": round(sorted(lat)[int(0.95 * len(lat))] * 1e3, 3),
        }
        # EOF via half-close ends the session cleanly
        sess.sock.shutdown(socket.SHUT_WR)
        code = sess.c.wait(timeout=10)["StatusCode"]
        record(
            "rounds_attach_stdin_eof_ends",
            code == 0,
            f"exit {code} after shutdown(SHUT_WR)",
        )
    finally:
        sess.close()

    # --- B) FIFOs in a bind-mounted host directory
    d = tmp / "fifo"
    d.mkdir()
    os.chown(d, TRAIN_UID, TRAIN_UID)
    for name in ("req", "resp"):
        os.mkfifo(d / name, 0o600)
        os.chown(d / name, TRAIN_UID, TRAIN_UID)
    mounts = [
        docker.types.Mount(
            "/input/data.parquet", str(data), type="bind", read_only=True
        ),
        docker.types.Mount("/ipc", str(d), type="bind", read_only=False),
    ]
    t0 = time.perf_counter()
    c = client.containers.create(
        img, ["serve-fifo", "/ipc"], **hardened(data, mounts=mounts)
    )
    try:
        c.start()
        # open() on a FIFO blocks until the peer opens it: do it in a thread with a
        # deadline, or a dead container hangs the executor.
        fds = {}

        def opener():
            fds["w"] = open(d / "req", "w", encoding="utf-8")
            fds["r"] = open(d / "resp", encoding="utf-8")

        th = threading.Thread(target=opener, daemon=True)
        th.start()
        th.join(60)
        if th.is_alive():
            record("rounds_fifo", False, "container never opened the FIFOs")
            return
        w, r = fds["w"], fds["r"]
        ready = json.loads(r.readline())
        t_ready = time.perf_counter() - t0
        lat = []
        for i in range(rounds):
            t1 = time.perf_counter()
            w.write(json.dumps({"op": "echo", "i": i}) + "\n")
            w.flush()
            resp = json.loads(r.readline())
            lat.append(time.perf_counter() - t1)
            assert resp["echo"]["i"] == i
        w.write(json.dumps({"op": "stop"}) + "\n")
        w.flush()
        r.readline()
        code = c.wait(timeout=10)["StatusCode"]
        record(
            "rounds_fifo",
            ready.get("ready") and code == 0,
            f"ready after {t_ready:.2f}s; echo round-trip median {statistics.median(lat) * 1e3:.2f} ms, "
            f"p95 {sorted(lat)[int(0.95 * len(lat))] * 1e3:.2f} ms over {rounds}; exit {code}",
        )
        REPORT["timings"]["rounds_fifo"] = {
            "ready_s": round(t_ready, 3),
            "rounds": rounds,
            "median_ms": round(statistics.median(lat) * 1e3, 3),
            "p95_ms": round(sorted(lat)[int(0.95 * len(lat))] * 1e3, 3),
        }
        w.close()
        r.close()
    finally:
        c.remove(force=True)

    # --- C) a killed long-lived container: the attach reader must see EOF, not hang
    sess = AttachedSession(client, img, hardened(data), ["serve-stdio"])
    try:
        sess.readline(timeout=60)
        sess.c.kill()
        t1 = time.perf_counter()
        try:
            sess.request({"op": "echo"}, timeout=10)
            outcome = "got a response?!"
        except (EOFError, BrokenPipeError, ConnectionResetError) as e:
            outcome = f"{type(e).__name__} after {time.perf_counter() - t1:.3f}s"
        except TimeoutError:
            outcome = "timeout (no EOF)"
        record(
            "rounds_attach_detects_kill",
            "timeout" not in outcome and "?!" not in outcome,
            outcome,
        )
    finally:
        sess.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="pht/train-poc:0.1")
    ap.add_argument("--base", default="pht/base:bookworm-py311")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    client = docker.from_env(timeout=120)
    info = client.info()
    REPORT["engine"] = {
        "server_version": info.get("ServerVersion"),
        "api_version": client.api.api_version,
        "storage_driver": info.get("Driver"),
        "backing_fs": dict(info.get("DriverStatus") or []).get("Backing Filesystem"),
        "cgroup": f"{info.get('CgroupVersion')} / {info.get('CgroupDriver')}",
        "security_options": info.get("SecurityOptions"),
        "sdk": docker.__version__,
    }
    print(json.dumps(REPORT["engine"]), flush=True)
    img = client.images.get(a.image).id
    base = client.images.get(a.base).id
    REPORT["images"] = {
        a.image: {"id": img, "size": client.images.get(img).attrs["Size"]},
        a.base: {"id": base, "size": client.images.get(base).attrs["Size"]},
    }

    tmp = Path(tempfile.mkdtemp(prefix="pht-verify-"))
    tmp.chmod(0o755)
    try:
        data = make_data(tmp)
        check_security_state(client, img, data)
        check_each_option(client, img, data)
        check_limits_bite(client, img, data)
        check_output_dir(client, img, data, tmp)
        check_rounds(client, img, data, tmp, a.rounds)
        check_timings(client, base, img, data)
    finally:
        for c in client.containers.list(
            all=True, filters={"label": "org.pht.verify=1"}
        ):
            c.remove(force=True)
        shutil.rmtree(tmp, ignore_errors=True)

    if a.json:
        Path(a.json).write_text(json.dumps(REPORT, indent=2))
    print(
        f"\n{len(REPORT['checks']) - len(FAILED)}/{len(REPORT['checks'])} checks ok; failed: {FAILED or 'none'}"
    )
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
