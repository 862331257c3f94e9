"""Proof-of-concept train entrypoint (runs inside the container as uid 10001).

Modes (first argument):

  run         read PHT_INPUT (default /input/data.parquet, mounted read-only),
              write PHT_OUTPUT_DIR/result.json (default /output) and exit.
  serve-stdio long-lived: one JSON request per line on stdin, one JSON response
              per line on stdout; {"op": "stop"} or EOF ends it.
  serve-fifo  long-lived: same protocol over two FIFOs req/resp in the
              directory given as second argument (a bind-mounted host dir).
  probe       print the process' security state as JSON (for the executor tests).

Requests: {"op": "summary"} -> per-column summary of the input;
          {"op": "echo", ...} -> the request back (latency probe);
          {"op": "ttest", "column": C, "group": G} -> Welch t-test between the
          two levels of G (scipy).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

INPUT = Path(os.environ.get("PHT_INPUT", "/input/data.parquet"))
OUTPUT_DIR = Path(os.environ.get("PHT_OUTPUT_DIR", "/output"))


def _frame():
    import pandas as pd

    return pd.read_parquet(INPUT)


def summary(df) -> dict:
    import numpy as np

    cols = {}
    for name in df.columns:
        s = df[name]
        if np.issubdtype(s.dtype, np.number):
            cols[name] = {
                "n": int(s.notna().sum()),
                "mean": float(s.mean()),
                "sd": float(s.std(ddof=1)),
            }
        else:
            cols[name] = {"n": int(s.notna().sum()), "levels": int(s.nunique())}
    return {"rows": int(len(df)), "columns": cols}


def handle(req: dict, df) -> dict:
    op = req.get("op")
    if op == "echo":
        return {"ok": True, "echo": req}
    if op == "summary":
        return {"ok": True, "result": summary(df)}
    if op == "ttest":
        from scipy import stats

        g = df[req["group"]]
        levels = sorted(g.dropna().unique())[:2]
        a, b = (df.loc[g == lv, req["column"]].to_numpy() for lv in levels)
        t = stats.ttest_ind(a, b, equal_var=False)
        return {
            "ok": True,
            "result": {
                "levels": [str(x) for x in levels],
                "t": float(t.statistic),
                "p": float(t.pvalue),
            },
        }
    return {"ok": False, "error": f"unknown op {op!r}"}


def serve(fin, fout, df) -> int:
    for line in fin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            resp = {"ok": False, "error": f"bad json: {e}"}
        else:
            if req.get("op") == "stop":
                fout.write(json.dumps({"ok": True, "stopped": True}) + "\n")
                fout.flush()
                return 0
            try:
                resp = handle(req, df)
            except Exception as e:  # a bad request must not kill the session
                resp = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        fout.write(json.dumps(resp) + "\n")
        fout.flush()
    return 0


def probe() -> dict:
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in (
            "Uid",
            "Gid",
            "Groups",
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "NoNewPrivs",
            "Seccomp",
            "Seccomp_filters",
        ):
            status[key] = val.strip()
    checks = {}

    def attempt(name, fn):
        try:
            fn()
            checks[name] = "allowed"
        except Exception as e:
            checks[name] = f"denied: {type(e).__name__}: {e}"

    import socket

    def net():
        s = socket.create_connection(("1.1.1.1", 53), timeout=2)
        s.close()

    attempt("network_connect", net)
    attempt("write_rootfs", lambda: Path("/opt/x").write_text("x"))
    attempt("write_input", lambda: open(INPUT, "ab").close())
    attempt("write_tmp", lambda: Path("/tmp/x").write_text("x"))
    attempt("write_output", lambda: (OUTPUT_DIR / "probe.txt").write_text("x"))

    def exec_tmp():
        import shutil
        import subprocess

        shutil.copy("/bin/true", "/tmp/true")
        os.chmod("/tmp/true", 0o755)
        subprocess.run(["/tmp/true"], check=True)

    attempt("exec_from_tmp", exec_tmp)
    ifaces = (
        sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
    )
    return {
        "status": status,
        "checks": checks,
        "net_ifaces": ifaces,
        "pids_max": _read("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
        "mem_limit": _read(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"
        ),
        "cpu": _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"),
    }


def _read(*paths):
    for p in paths:
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return None


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "run"
    if mode == "probe":
        print(json.dumps(probe()), flush=True)
        return 0
    t0 = time.perf_counter()
    df = _frame()
    if mode == "run":
        out = {
            "train": "poc",
            "input": str(INPUT),
            **summary(df),
            "seconds": round(time.perf_counter() - t0, 4),
        }
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        tmp = OUTPUT_DIR / ".result.json.tmp"
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(OUTPUT_DIR / "result.json")
        print(
            json.dumps({"ok": True, "wrote": str(OUTPUT_DIR / "result.json")}),
            flush=True,
        )
        return 0
    if mode == "serve-stdio":
        sys.stdout.write(json.dumps({"ok": True, "ready": True}) + "\n")
        sys.stdout.flush()
        return serve(sys.stdin, sys.stdout, df)
    if mode == "serve-fifo":
        d = Path(argv[2])
        # open order matters: the host opens req for writing and resp for reading
        with (
            open(d / "req", encoding="utf-8") as fin,
            open(d / "resp", "w", encoding="utf-8") as fout,
        ):
            fout.write(json.dumps({"ok": True, "ready": True}) + "\n")
            fout.flush()
            return serve(fin, fout, df)
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
