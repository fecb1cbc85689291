"""Same-run A/B: the floor and one gateway per source tree, interleaved, at one concurrency.

Run-to-run noise on a shared VM is larger than most single changes, so a change is judged by
comparing builds inside one run: every target is started once (gateway pinned to core 0 like in
`run.py`, each from its own tree through PYTHONPATH, e.g. a `git worktree` of the commit before),
then each round runs every target once in a rotated order; medians over the rounds.

Usage: ``.venv/bin/python bench/ab.py [--conns 16] [--rounds 5] [--duration 5] TREE [TREE ...]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from lib import BENCH, PROXY_CORE, Procs, Server, free_port, run_wrk, wait_http, wait_quiet
from run import PUBLIC_MODEL, UPSTREAM_MODEL, Target, gateway_yaml, one_run, start_floor, start_mock


def start_tree(procs: Procs, tree: Path, upstream: Server, index: int) -> Server:
    port = free_port()
    config = procs.out_dir / f"ab-gateway-{index}.yaml"
    config.write_text(gateway_yaml(port, upstream))
    log = procs.out_dir / f"ab-gateway-{index}.log"
    argv = ["taskset", "-c", PROXY_CORE, sys.executable, "-m", "gateway", "serve", "--config"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*argv, str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
        )
    server = Server(f"gateway-{index}", port, proc, log)
    procs.servers.append(server)
    wait_http(server, "/readyz")
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path, help="source trees (repository roots)")
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    procs = Procs(out)
    try:
        mock = start_mock(procs, 0)
        targets = {"floor": Target("floor", start_floor(procs, mock, "ab"), mock, UPSTREAM_MODEL)}
        for index, tree in enumerate(tree.resolve() for tree in args.trees):
            server = start_tree(procs, tree, mock, index)
            targets[f"{index}:{tree.name}"] = Target("gateway", server, mock, PUBLIC_MODEL)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        names = list(targets)
        for rnd in range(args.rounds):
            shift = rnd % len(names)
            for name in names[shift:] + names[:shift]:
                target = targets[name]
                wait_quiet()
                run_wrk(target.url, args.conns, 1, target.model)  # warm-up, discarded
                sample = one_run(target, args.conns, args.duration)
                samples[name].append((sample["rps"], sample["proxy_cpu_us_per_req"]))
                print(
                    f"r{rnd} {name:<24} {sample['rps']:8.0f} rps "
                    f"{sample['proxy_cpu_us_per_req']:6.1f} µs/req",
                    flush=True,
                )
        floor = statistics.median(rps for rps, _ in samples["floor"])
        print(f"medians at {args.conns} connections:")
        for name, values in samples.items():
            rps = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(f"{name:<24} {rps:8.0f} rps {cpu:6.1f} µs/req  ratio to floor {rps / floor:.3f}")
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
