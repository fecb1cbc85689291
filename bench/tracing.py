"""Same-run A/B of tracing: the gateway with tracing off against the gateway with tracing on.

Both gateways (pinned to core 0 like in `run.py`) front one mock upstream; the traced one exports
every span (sample ratio 1, the worst case) over OTLP/HTTP to a sink on the load core that
accepts each export and answers 200 without decoding it, so the gateway pays the whole SDK and
exporter cost and the sink none of it. Each round runs both in a rotated order; medians over the
rounds and the on/off throughput ratio (issue 16 asks for >= 0.8) are printed.

Usage: ``.venv/bin/python bench/tracing.py [--conns 16] [--rounds 5] [--duration 5] [--ratio R]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lib import BENCH, PROXY_CORE, Procs, Server, free_port, run_wrk, wait_http, wait_quiet
from run import PUBLIC_MODEL, Target, gateway_yaml, one_run, start_mock


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts every export (an empty protobuf answer is valid)."""

    exports = 0
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Sink.exports += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start_gateway(procs: Procs, upstream: Server, tag: str, extra: str) -> Server:
    port = free_port()
    config = procs.out_dir / f"tracing-{tag}.yaml"
    config.write_text(gateway_yaml(port, upstream, extra))
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    server = procs.start(f"tracing-{tag}", argv, PROXY_CORE, port)
    wait_http(server, "/readyz")
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=1.0, help="tracing.sample_ratio when on")
    args = parser.parse_args()
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    traced = f'tracing: {{enabled: true, endpoint: "{endpoint}", sample_ratio: {args.ratio}}}\n'
    procs = Procs(out)
    try:
        mock = start_mock(procs, 0)
        targets = {
            "off": Target("gateway", start_gateway(procs, mock, "off", ""), mock, PUBLIC_MODEL),
            "on": Target("gateway", start_gateway(procs, mock, "on", traced), mock, PUBLIC_MODEL),
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        names = list(targets)
        for rnd in range(args.rounds):
            for name in names[rnd % 2 :] + names[: rnd % 2]:
                target = targets[name]
                wait_quiet()
                run_wrk(target.url, args.conns, 1, target.model)  # warm-up, discarded
                sample = one_run(target, args.conns, args.duration)
                samples[name].append((sample["rps"], sample["proxy_cpu_us_per_req"]))
                print(
                    f"r{rnd} tracing {name:<3} {sample['rps']:8.0f} rps "
                    f"{sample['proxy_cpu_us_per_req']:6.1f} µs/req",
                    flush=True,
                )
        if Sink.exports == 0:
            raise SystemExit("FATAL: the traced gateway exported nothing")
        rps = {name: statistics.median(v[0] for v in values) for name, values in samples.items()}
        cpu = {name: statistics.median(v[1] for v in values) for name, values in samples.items()}
        print(f"medians at {args.conns} connections ({Sink.exports} OTLP exports received):")
        for name in names:
            print(f"tracing {name:<3} {rps[name]:8.0f} rps {cpu[name]:6.1f} µs/req")
        print(f"throughput on/off: {rps['on'] / rps['off']:.3f} (issue 16 asks for >= 0.8)")
    finally:
        procs.stop_all()
        sink.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
