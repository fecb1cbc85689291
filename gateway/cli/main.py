"""The `gateway` command line: serve, validate, mock-upstream, demo.

Each verb is a small function; `main` only parses arguments and dispatches. Exit codes: 0 ok,
1 rejected config or failed command, 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from gateway.cli.admin import add_commands
from gateway.config import GatewayConfig, load_config
from gateway.config.routes import Model, Performance
from gateway.errors import ConfigError

log = logging.getLogger("gateway")
DEFAULT_RPS = 10.0  # the canary projection's request rate without `expected_rps`
DEMO_CONFIG = Path(__file__).with_name("demo.yaml")  # package data: works from any directory
DEMO_TOKEN_ENV = "GATEWAY_ADMIN_TOKEN"  # noqa: S105 (a variable name, not a secret)
UNSET_ENV = re.compile(r"environment variable (\S+) is not set")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per admin call
    result: int = args.func(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Version-aware LLM routing gateway"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG"),
        required="GATEWAY_CONFIG" not in os.environ,
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (share state through Redis)"
    )
    serve.set_defaults(func=cmd_serve)
    validate = sub.add_parser("validate", help="check a config file")
    validate.add_argument("path")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="treat environment variables the config names but this shell lacks as errors "
        "(without it they are warnings, so configs can be checked where the secrets are not)",
    )
    validate.add_argument(
        "--online",
        action="store_true",
        help="also ask the model registry: it answers, each registered model exists, and "
        "which versions would be routed or refused",
    )
    validate.set_defaults(func=cmd_validate)
    mock = sub.add_parser(
        "mock-upstream", help="run the built-in OpenAI-compatible fake model server"
    )
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, required=True)
    mock.add_argument("--model", default="mock-model")
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.add_argument("--ttft-ms", type=float, default=None)
    mock.add_argument("--chunks", type=int, default=8)
    mock.add_argument("--chunk-delay-ms", type=float, default=0.0)
    mock.add_argument("--error-rate", type=float, default=0.0)
    mock.add_argument("--seed", type=int, default=0)
    mock.set_defaults(func=cmd_mock)
    add_commands(sub)
    keys = sub.add_parser("keys", help="client API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a fresh key once, and the config lines for it")
    new.add_argument("--id", required=True, help="a name for the key (shown in logs, never secret)")
    new.add_argument("--models", default="*", help="comma-separated model names, or * (default)")
    new.set_defaults(func=cmd_keys_new)
    demo = sub.add_parser(
        "demo", help="run two mock versions and the gateway on the example config"
    )
    demo.add_argument("--config", default=str(DEMO_CONFIG))
    demo.add_argument("--port", type=int, help="the gateway's port (default: the config's)")
    demo.set_defaults(func=cmd_demo)
    return parser


def _load(path: str, environ: Mapping[str, str] | None = None) -> GatewayConfig | None:
    try:
        return load_config(path, environ)
    except ConfigError as err:
        _report(path, err)
        return None


def _report(path: str, err: ConfigError) -> None:
    print(f"{path}: {len(err.problems)} problem(s):", file=sys.stderr)
    for problem in err.problems:
        print(f"  {problem}", file=sys.stderr)


def _load_for_validate(path: str, strict: bool) -> GatewayConfig | None:
    """`_load`, except that variables named by `*_env` keys but unset in this shell are
    warnings (the file is then checked as if they were set), unless `strict`."""
    try:
        return load_config(path)
    except ConfigError as err:
        missing = {m.group(1) for p in err.problems if (m := UNSET_ENV.search(p))}
        if strict or not missing or any(not UNSET_ENV.search(p) for p in err.problems):
            _report(path, err)
            return None
    for name in sorted(missing):
        print(
            f"{path}: warning: environment variable {name} is not set here (`serve` refuses "
            "to start without it; --strict makes this an error)"
        )
    return _load(path, {**os.environ, **dict.fromkeys(missing, "set-where-the-gateway-runs")})


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load_for_validate(args.path, args.strict)
    if cfg is None:
        return 1
    print(f"{args.path}: OK — {len(cfg.models)} model(s)")
    for name, model in cfg.models.items():
        aliases = ", ".join(f"{a}→{v}" for a, v in model.aliases.items()) or "none"
        print(
            f"  {name}: versions {', '.join(model.versions) or '-'}"
            f"{' + registry ' + (model.registry.name or name) if model.registry else ''}; "
            f"aliases {aliases}; "
            f"{model.routing.strategy} {_route_summary(model)}"
        )
        _print_projection(model)
    if cfg.registry is not None:
        mlflow = cfg.registry.mlflow
        print(
            f"  registry: MLflow at {mlflow.uri(os.environ)}, read every {mlflow.poll_s:g}s; "
            f"upstreams allowed: {', '.join(mlflow.allowed_upstreams)}"
        )
    if args.online:
        from gateway.cli.registry_check import check_online

        report, problems = check_online(cfg)
        print("\n".join(report) if report else "  --online: no registry configured")
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1 if problems else 0
    return 0


def _print_projection(model: Model) -> None:
    """Each canary's projected step durations (at `expected_rps`, or 10 req/s)."""
    from gateway.canary import format_projection, project
    from gateway.config.canary import canary_settings

    canary = model.routing.canary
    if canary is None or canary.from_registry is not None:
        return
    rate = canary.expected_rps or DEFAULT_RPS
    rows = project(canary_settings(canary), rate, canary.expected_error_rate)
    print(textwrap.indent(format_projection(rows, rate, canary.expected_error_rate), "    "))


def _route_summary(model: Model) -> str:
    routing = model.routing
    if routing.strategy == "performance":
        perf = routing.performance or Performance()
        pool = ", ".join(perf.versions or model.versions)
        caps = ", ".join(f"{v}≤{w:g}%" for v, w in (routing.weights or {}).items())
        return f"({perf.objective}) over {pool}" + (f"; ceilings {caps}" if caps else "")
    if routing.canary is not None and routing.strategy == "canary":
        steps = "/".join(f"{s.weight:g}" for s in routing.canary.steps)
        arms = routing.canary.from_registry
        if arms is not None:
            return f"{arms.baseline_alias} -> {arms.candidate_alias} (registry), steps {steps} %"
        return f"{routing.canary.baseline} -> {routing.canary.candidate}, steps {steps} %"
    if routing.follow_alias is not None:
        return f"all to {routing.follow_alias}"
    if not model.versions:
        return "from the registry"
    weights = routing.weights or {model.aliases.get("stable", next(iter(model.versions))): 100}
    return ", ".join(f"{v}={w:g}" for v, w in weights.items())


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 1
    host = args.host or cfg.listen.host
    port = args.port if args.port is not None else cfg.listen.port
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 1
    if args.workers > 1:
        _run_workers(cfg, args.config, host, port, args.workers)
    else:
        _run(cfg, host, port, config_path=args.config)
    return 0


def _run(cfg: GatewayConfig, host: str, port: int, config_path: str | None = None) -> None:
    from gateway.app import create_app
    from gateway.observability.logs import configure
    from gateway.server.uvicorn_server import serve

    configure(cfg.logging.level, cfg.logging.format, cfg.logging.access)
    app = create_app(cfg, config_path=config_path)
    if cfg.auth is None:
        log.warning(
            "NO CLIENT AUTHENTICATION: any caller that can reach %s:%d may use every model. "
            "Add an `auth.keys` section (see `gateway keys new`) before exposing this gateway.",
            host,
            port,
        )
    log.info(
        "serving %d model(s) on http://%s:%d (config revision %s, store %s)",
        len(cfg.models),
        host,
        port,
        app.current.runtime.revision,
        cfg.store.backend,
    )
    serve(app, host, port)


def _run_workers(cfg: GatewayConfig, path: str, host: str, port: int, workers: int) -> None:
    """`workers` uvicorn processes, each building its own app from GATEWAY_CONFIG."""
    import uvicorn

    from gateway.app import CONFIG_ENV
    from gateway.server.uvicorn_server import uvicorn_options

    if cfg.store.backend == "memory":
        log.warning(
            "store.backend is memory: each of the %d workers sees only its own traffic "
            "(use store.backend: redis to share live metrics)",
            workers,
        )
    os.environ[CONFIG_ENV] = str(Path(path).resolve())
    log.info("serving on http://%s:%d with %d workers", host, port, workers)
    options = uvicorn_options(cfg)
    uvicorn.run(
        "gateway.app:from_env", factory=True, host=host, port=port, workers=workers, **options
    )


def cmd_keys_new(args: argparse.Namespace) -> int:
    from gateway.auth import new_key

    key, digest = new_key()
    models = ", ".join(f'"{m.strip()}"' for m in args.models.split(",") if m.strip())
    print(f"API key (shown once; give it to the client, store it nowhere else):\n\n  {key}\n")
    print("Add to the config under auth.keys:\n")
    print(f'  - {{id: "{args.id}", sha256: "{digest}", models: [{models}]}}')
    return 0


def cmd_mock(args: argparse.Namespace) -> int:
    from gateway.mock import MockSettings, run

    settings = MockSettings(
        model=args.model,
        latency_ms=args.latency_ms,
        ttft_ms=args.ttft_ms,
        chunks=args.chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        error_rate=args.error_rate,
        seed=args.seed,
    )
    run(settings, args.host, args.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The gateway and its mock upstreams in one command: the admin API on a token made up now
    (unless `GATEWAY_ADMIN_TOKEN` is set), SIGHUP reloads the config, SIGINT/SIGTERM stop all."""
    token = os.environ.setdefault(DEMO_TOKEN_ENV, secrets.token_urlsafe(24))
    cfg = _load(args.config)
    if cfg is None:
        return 1
    mocks = _start_mocks(cfg)
    try:
        port = cfg.listen.port if args.port is None else args.port
        _print_demo(cfg, port, token if cfg.admin is not None else None)
        _run(cfg, cfg.listen.host, port, config_path=args.config)
    finally:
        for proc in mocks:
            proc.terminate()
        for proc in mocks:
            proc.wait(timeout=5)
    return 0


def _start_mocks(cfg: GatewayConfig) -> list[subprocess.Popen[bytes]]:
    """One mock upstream per distinct loopback upstream in the config."""
    seen: dict[int, str] = {}
    for model in cfg.models.values():
        for version in model.versions.values():
            url = urlsplit(version.upstream.url)
            if url.hostname in ("127.0.0.1", "localhost") and url.port:
                seen.setdefault(url.port, version.upstream.model)
    procs = []
    for port, name in seen.items():
        cmd = [
            sys.executable,
            "-m",
            "gateway",
            "mock-upstream",
            "--port",
            str(port),
            "--model",
            name,
            "--chunks",
            "12",
            "--chunk-delay-ms",
            "40",
            "--latency-ms",
            "20",
        ]
        procs.append(subprocess.Popen(cmd))
        log.info("demo: mock upstream %r on port %d", name, port)
    for port in seen:
        _wait_for_port(port)
    return procs


def _wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Until a mock upstream accepts connections on `port` (or `timeout_s` passes)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)


def _print_demo(cfg: GatewayConfig, port: int, token: str | None) -> None:
    base = f"http://{cfg.listen.host}:{port}"
    model = next(iter(cfg.models))
    admin = (
        f"""
The admin API, CLI and status page (token made up for this run):

  export {DEMO_TOKEN_ENV}={token}
  gateway status --url {base}
  gateway weights set --model {model} v1=50 v2=50 --url {base}
  open {base}/login   (paste the token)
"""
        if token
        else ""
    )
    print(
        f"""
Gateway demo on {base} — try, in another terminal:

  curl -s {base}/v1/models | python3 -m json.tool
  curl -si {base}/v1/chat/completions -H 'content-type: application/json' \\
       -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}]}}'
  curl -sN {base}/v1/chat/completions -H 'content-type: application/json' \\
       -H 'x-gateway-version: v2' \\
       -d '{{"model": "{model}", "stream": true, "messages": [{{"role": "user", "content": "x"}}]}}'
  curl -s {base}/metrics | grep gateway_requests
{admin}
Press Ctrl-C to stop; SIGHUP reloads the config.
""",
        flush=True,
    )
