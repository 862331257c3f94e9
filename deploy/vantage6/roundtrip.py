"""Send one task to a local vantage6 network and time the round trip.

Run with the vantage6 venv (``.venv-v6/bin/python``), after start-network.sh:

    roundtrip.py [--dir .build/vantage6] [--image TAG] [--organizations a,b,c]
                 [--repeat N] [--interval S]

Logs in as the fixture's analyst (password in <dir>/analyst.password), creates a
task ``{"method": "describe"}`` for the algorithm image on the named stations'
organisations (default: every station with a running node), waits for it and
prints each organisation's result plus the wall time of the round trip (create ->
all results fetched). Exits 1 if a run did not complete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vantage6.client import UserClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def main() -> int:
    """Create the task(s), wait, print results and timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO / ".build" / "vantage6")
    parser.add_argument(
        "--image", default=None, help="default: the image in <dir>/network.json"
    )
    parser.add_argument("--organizations", default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()

    state = json.loads((args.dir / "network.json").read_text())
    image = args.image or state["image"]
    client = UserClient(
        "http://127.0.0.1", state["server_port"], "/api", log_level="warn"
    )
    client.authenticate("analyst", (args.dir / "analyst.password").read_text().strip())
    client.setup_encryption(None)

    collaboration = client.collaboration.list(name="pht")["data"][0]["id"]
    orgs = {o["name"]: o["id"] for o in client.organization.list()["data"]}
    names = args.organizations.split(",") if args.organizations else state["stations"]
    ids = [orgs[name] for name in names]

    failed = False
    for attempt in range(args.repeat):
        start = time.perf_counter()
        task = client.task.create(
            collaboration=collaboration,
            organizations=ids,
            name="v6probe-describe",
            image=image,
            description="rows and columns of the node's database",
            input_={"method": "describe", "kwargs": {}},
            databases=[{"label": "default"}],
        )
        created = time.perf_counter()
        client.wait_for_task_completion(
            client.request, task["id"], args.interval, False
        )
        runs = client.run.from_task(task["id"])["data"]
        results = client.result.from_task(task["id"])["data"]
        done = time.perf_counter()
        for run in runs:
            org = next(n for n, i in orgs.items() if i == run["organization"]["id"])
            status = run["status"]
            if status != "completed":
                failed = True
                print(
                    f"{org}: run {run['id']} {status}: {run.get('log') or ''}".strip()
                )
        for result in results:
            value = result["result"]  # the algorithm's JSON output, as a string
            decoded = json.loads(value) if isinstance(value, str) and value else value
            print(f"task {task['id']} result: {json.dumps(decoded)}")
        print(
            f"round trip {attempt + 1}: {done - start:.2f} s "
            f"(create {created - start:.2f} s) for {len(ids)} organisation(s)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
