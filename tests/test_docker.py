"""Container tests on a real Docker engine: the Docker executor gives the same numbers as
the process executor, and malicious train images are contained.

Without an engine these tests are skipped with the reason; under CI (``CI=true``) a
missing engine is a failure, because `make test` starts one.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_embedded, write_study

from pht.station import docker_executor
from pht.station.executors import Job, Limits
from pht.station.image_check import UnsafeSkipCodeCheck

REASON = docker_executor.available()
if REASON and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the container tests, but: {REASON}")
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(REASON is not None, reason=f"no Docker engine: {REASON}"),
]


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    from pht.images import build_all

    return build_all()


@pytest.fixture(scope="module")
def runtime(images: dict[str, str]) -> str:
    from pht.images import runtime_image

    return runtime_image()


def frames(n: int = 300, seed: int = 3) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in ("s1", "s2"):
        out[s] = pd.DataFrame(
            {
                "os_days": np.ceil(rng.exponential(400, n)),
                "death": rng.integers(0, 2, n),
                "regimen": rng.choice(["standard", "extended_interval"], n),
                "age": rng.integers(30, 90, n),
            }
        )
    return out


def network(root: Path, executor: str, images: dict[str, str]) -> Path:
    from pht.provision import policy_document, provision

    (root / "data").mkdir(parents=True)
    held = {}
    for s, frame in frames().items():
        path = root / "data" / f"{s}.parquet"
        frame.to_parquet(path, index=False)
        held[s] = {"melanoma": path}
    made = provision(
        root,
        held,
        policy=policy_document(
            columns=["os_days", "death", "regimen", "age"],
            classes=("aggregate", "model", "event_table", "risk_set_sums"),
        ),
        executor=executor,
        images=images,
    )
    return made.network


@pytest.mark.parametrize(
    "parameters",
    [
        {
            "train": "survival.km",
            "parameters": {
                "time": "os_days",
                "event": "death",
                "group": "regimen",
                "tau": 365,
                "at": 180,
            },
        },
        {
            "train": "survival.cox",
            "parameters": {
                "time": "os_days",
                "event": "death",
                "covariates": ["age", "regimen"],
                "mode": "stratified",
            },
        },
        {
            "train": "survival.cox",
            "parameters": {
                "time": "os_days",
                "event": "death",
                "covariates": ["age", "regimen"],
                "mode": "pooled",
            },
        },
    ],
)
def test_docker_and_process_executors_give_identical_results(
    tmp_path, images, parameters
) -> None:
    results = {}
    for executor in ("process", "docker"):
        root = tmp_path / executor
        net = network(root, executor, images)
        study = write_study(root, **parameters)
        results[executor] = run_embedded(study, net)
    a, b = results["process"], results["docker"]
    assert {s["executor"] for s in b["stations"]} == {"docker"}
    for key in ("km", "logrank", "rmst", "survival_at", "cox"):
        if key in a:
            left, right = dict(a[key]), dict(b[key])
            for noise in ("iterations",):
                left.pop(noise, None), right.pop(noise, None)
            # hidden stations' own fits are labelled in a random order per run
            for side in (left, right):
                if "station_estimates" in side:
                    side["station_estimates"] = sorted(
                        json.dumps(v, sort_keys=True)
                        for v in side["station_estimates"].values()
                    )
            assert json.dumps(left, sort_keys=True) == json.dumps(
                right, sort_keys=True
            ), key


def build_probe(runtime: str, tmp_path: Path, name: str, script: str) -> str:
    context = tmp_path / f"probe-{name}"
    context.mkdir()
    (context / "probe.py").write_text(textwrap.dedent(script))
    (context / "Dockerfile").write_text(
        f"FROM {runtime}\nCOPY probe.py /opt/train/probe.py\n"
        'ENTRYPOINT ["/opt/venv/bin/python", "-I", "/opt/train/probe.py"]\n'
    )
    tag = f"pht/test-probe-{name}:latest"
    subprocess.run(
        ["docker", "build", "--network", "none", "-q", "-t", tag, str(context)],
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


HEADER = """\
import json, os, socket, sys
args = sys.argv
out = args[args.index("--output") + 1]
def report(**facts):
    with open(os.path.join(out, "output.json"), "w") as handle:
        json.dump(facts, handle)
def attempt(action):
    try:
        action()
        return "allowed"
    except BaseException as exc:
        return "blocked: " + type(exc).__name__
"""

ATTACKS = {
    "status": HEADER
    + """
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
report(cap_eff=status["CapEff"].strip(), no_new_privs=status["NoNewPrivs"].strip(),
       seccomp=status["Seccomp"].strip(), uid=os.getuid())
""",
    "escape": HEADER
    + """
report(
    tcp=attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=3)),
    dns=attempt(lambda: socket.getaddrinfo("deb.debian.org", 80)),
    rootfs=attempt(lambda: open("/etc/pht-was-here", "w").write("x")),
    data=attempt(lambda: open(args[args.index("--data") + 1], "a").write("x")),
    tmp_exec=attempt(lambda: (open("/tmp/x.sh", "w").write("#!/bin/sh\\n"),
                              os.chmod("/tmp/x.sh", 0o755),
                              os.execv("/tmp/x.sh", ["/tmp/x.sh"]))),
)
""",
    "symlink": HEADER
    + """
os.symlink(args[args.index("--data") + 1], os.path.join(out, "output.json"))
""",
    "forkbomb": HEADER
    + """
import time
children = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    except OSError:
        break
report(children=children)
""",
    "membomb": HEADER
    + """
hog = []
while True:
    hog.append(bytearray(100 * 1024 * 1024))
""",
    "loop": HEADER
    + """
while True:
    pass
""",
    "flood": HEADER
    + """
row = "NKR-3f9a8b7c6d5e,1955-01-01,melanoma,IV-M1c\\n" * 100
while True:
    sys.stdout.write(row)
""",
    "bigfile": HEADER
    + """
def fill():
    with open(os.path.join(out, "big.bin"), "wb") as handle:
        for _ in range(200):
            handle.write(b"x" * (1024 * 1024))
            handle.flush()
outcome = attempt(fill)
size = os.path.getsize(os.path.join(out, "big.bin"))
os.remove(os.path.join(out, "big.bin"))  # make room to report
report(write=outcome, size=size)
""",
    "manyfiles": HEADER
    + """
made = 0
try:
    for i in range(10000):
        open(os.path.join(out, f"f{i}"), "w").close()
        made += 1
except OSError:
    pass
for i in range(made):
    os.remove(os.path.join(out, f"f{i}"))  # make room to report
report(files=made)
""",
}


def run_probe(tmp_path: Path, image: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    workdir = tmp_path / f"run-{image[7:19]}"
    (workdir / "output").mkdir(parents=True)
    dataset = tmp_path / "dataset.parquet"
    if not dataset.exists():
        pd.DataFrame({"x": [1, 2, 3]}).to_parquet(dataset)
        os.chmod(dataset, 0o640)
        os.chown(dataset, -1, docker_executor.TRAIN_GID)  # no supplementary groups
    (workdir / "input.json").write_text("{}")
    # the probes are arbitrary code: skip the code check to test the sandbox itself
    executor = docker_executor.DockerExecutor(
        docker_executor.ContainerLimits(memory="256m"),
        image_check=UnsafeSkipCodeCheck(),
    )
    job = Job(
        entrypoint=Path("/opt/train/probe.py"),
        input_file=workdir / "input.json",
        dataset=dataset,
        output_dir=workdir / "output",
        workdir=workdir,
        limits=Limits(timeout_seconds=timeout, output_bytes=16 * 1024**2),
        image=image,
    )
    return executor.run(job)


@pytest.fixture(scope="module")
def probes(runtime, tmp_path_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("probes")
    return {
        name: build_probe(runtime, root, name, script)
        for name, script in ATTACKS.items()
    }


def test_inside_the_container_no_capabilities_no_new_privs_seccomp_not_root(
    tmp_path, probes
) -> None:
    result = run_probe(tmp_path, probes["status"])
    facts = json.loads(result.output)
    assert facts["cap_eff"] == "0000000000000000"
    assert facts["no_new_privs"] == "1"
    assert facts["seccomp"] == "2"
    assert facts["uid"] != 0


def test_network_rootfs_data_and_tmp_exec_are_blocked(tmp_path, probes) -> None:
    facts = json.loads(run_probe(tmp_path, probes["escape"]).output)
    assert all(v.startswith("blocked") for v in facts.values()), facts


def test_symlink_output_is_not_followed(tmp_path, probes) -> None:
    result = run_probe(tmp_path, probes["symlink"])
    assert result.output is None  # O_NOFOLLOW: the link to /data is never read


def test_fork_bomb_is_stopped_by_the_pid_limit(tmp_path, probes) -> None:
    result = run_probe(tmp_path, probes["forkbomb"], timeout=30)
    facts = json.loads(result.output) if result.output else {"children": 0}
    assert facts["children"] < 64


def test_memory_bomb_is_killed(tmp_path, probes) -> None:
    result = run_probe(tmp_path, probes["membomb"])
    assert result.returncode == 137 and result.output is None


def test_endless_loop_is_killed_at_the_timeout(tmp_path, probes) -> None:
    result = run_probe(tmp_path, probes["loop"], timeout=3)
    assert result.timed_out and result.output is None and result.elapsed_seconds < 15


def test_stdout_flood_is_contained_and_not_forwarded(tmp_path, probes) -> None:
    result = run_probe(tmp_path, probes["flood"], timeout=3)
    assert result.timed_out and result.output is None


def test_huge_output_file_hits_the_size_cap(tmp_path, probes) -> None:
    facts = json.loads(run_probe(tmp_path, probes["bigfile"]).output)
    assert facts["write"].startswith("blocked") and facts["size"] <= 16 * 1024**2


def test_file_count_cap(tmp_path, probes) -> None:
    facts = json.loads(run_probe(tmp_path, probes["manyfiles"]).output)
    assert facts["files"] < 20


def test_no_container_is_left_behind(probes) -> None:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=org.pht.job"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == ""


STATION_ATTACKS = {
    "loop": ("while True:\n    pass\n", "error", "timeout: "),
    "symlink": (
        "import os, sys\nargs = sys.argv\nout = args[args.index('--output') + 1]\n"
        "os.makedirs(out, exist_ok=True)\n"
        "os.symlink(args[args.index('--data') + 1], os.path.join(out, 'output.json'))\n",
        "error",
        "train-failed: ",
    ),
    "rows": (
        "import json, os, sys\nimport pandas as pd\nargs = sys.argv\n"
        "out = args[args.index('--output') + 1]\n"
        "rows = pd.read_parquet(args[args.index('--data') + 1]).head(50)\n"
        "msg = {'status': 'ok', 'output': {'n': 300, 'events': 150, 'excluded': 0,"
        " 'groups': {}, 'rows': rows.to_dict(orient='records')}}\n"
        "open(os.path.join(out, 'output.json'), 'w').write(json.dumps(msg))\n",
        "refused",
        "guard: ",  # the guard's detail (undeclared key rows) goes to the station log
    ),
}


def test_malicious_images_through_a_station_are_reported_and_it_keeps_serving(
    tmp_path, runtime, images
) -> None:
    import shutil

    from pht.crypto import load_identity
    from pht.images import train_image
    from pht.manifest import TRAINS_DIR, Catalogue
    from pht.orchestrator.config import load_network
    from pht.orchestrator.embedded import EmbeddedEngine
    from pht.orchestrator.requester import Requester, signed_train
    from pht.provision import policy_document, provision
    from pht.station.executors import Limits
    from pht.wire import TrainRef

    trains = tmp_path / "trains-src"
    shutil.copytree(TRAINS_DIR, trains)
    km = TRAINS_DIR / "survival.km"
    for name, (script, _, _) in STATION_ATTACKS.items():
        folder = trains / f"evil.{name}"
        folder.mkdir()
        (folder / "manifest.yaml").write_text(
            (km / "manifest.yaml")
            .read_text()
            .replace("name: survival.km", f"name: evil.{name}")
        )
        (folder / "entrypoint.py").write_text(script)
        (folder / "Dockerfile").write_text((km / "Dockerfile").read_text())
    catalogue = Catalogue(trains)
    built = dict(images)
    for package in catalogue.packages():
        if package.manifest.name.startswith("evil."):
            built[str(package.manifest.ref)] = train_image(package, runtime)
    root = tmp_path / "net"
    (root / "data").mkdir(parents=True)
    path = root / "data" / "s1.parquet"
    frames()["s1"].to_parquet(path, index=False)
    rules = [
        {"name": n, "versions": ">=1.0.0,<2.0.0", "signers": ["keyring"]}
        for n in catalogue.names()
    ]
    made = provision(
        root,
        {"s1": {"melanoma": path}},
        executor="docker",
        images=built,
        catalogue=catalogue,
        policy=policy_document(
            columns=["os_days", "death", "regimen", "age"], trains=rules
        ),
    )
    net = load_network(made.network)
    station = EmbeddedEngine(net, catalogue).station("s1")
    station.limits = Limits(timeout_seconds=5)
    requester = Requester(
        load_identity(made.requester_key),
        {s: e.public_key for s, e in net.stations.items()},
    )

    def ask(train: str):  # type: ignore[no-untyped-def]
        package = catalogue.get(TrainRef.parse(train))
        return requester.request(
            role="analyst",
            purpose="package-management/reassessment",
            train=str(package.manifest.ref),
            train_digest=package.digest,
            train_envelope=signed_train(net.trains, package),
            dataset="melanoma",
            parameters={"time": "os_days", "event": "death"},
            targets=["s1"],
        )[1]

    for name, (_, status, reason) in STATION_ATTACKS.items():
        reply = station.handle(ask(f"evil.{name}"))
        assert reply.status == status and reason in (reply.reason or ""), (name, reply)
        assert reply.sealed is None
        assert station.handle(ask("survival.km")).ok  # keeps serving


def test_docker_save_and_load_keep_the_image_id(tmp_path, images) -> None:
    from pht.manifest import Catalogue
    from pht.wire import TrainRef

    image = images[str(Catalogue().get(TrainRef("survival.km")).manifest.ref)]
    archive = tmp_path / "train.tar"
    subprocess.run(
        ["docker", "save", "-o", str(archive), image], check=True, capture_output=True
    )
    loaded = subprocess.run(
        ["docker", "load", "-i", str(archive)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert image.split(":")[1][:12] in loaded.stdout or "Loaded image" in loaded.stdout
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", image],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == image
