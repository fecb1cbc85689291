"""The operator CLI's side of the admin API: `gateway status`, `overrides`, `weights set|clear`,
`alias set|clear`, `canary ...`, `registry status` and `reload`, against a running gateway.

Overrides set here carry the source `cli:<user>` (`$USER`) and, with `--ttl`, an expiry.

Talks HTTP to `--url` (default `http://127.0.0.1:8080`, or `GATEWAY_URL`) with the bearer token
from `GATEWAY_ADMIN_TOKEN` (never a command-line argument, so it stays out of shell history and
process lists). Prints tables for people; `--json` prints the API's answer as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx

from gateway.config.base import WEIGHT_RULE, weight_ok

TOKEN_ENV = "GATEWAY_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token


class AdminClient:
    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=timeout,
            headers={"authorization": f"Bearer {token}"},
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._http.request(method, path, json=body)
        try:
            data = resp.json()
        except ValueError:
            data = {"error": {"message": resp.text[:500]}}
        if resp.status_code >= 400:
            raise AdminError(resp.status_code, data)
        return data


class AdminError(Exception):
    def __init__(self, status: int, data: Any) -> None:
        message = data.get("error", {}).get("message") if isinstance(data, dict) else None
        problems = data.get("problems") if isinstance(data, dict) else None
        super().__init__(f"HTTP {status}: {message or problems or data}")
        self.status = status


def add_commands(sub: Any) -> None:
    """Register the admin verbs on the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    common.add_argument("--json", action="store_true", help="print the raw JSON answer")
    status = sub.add_parser(
        "status", parents=[common], help="models, versions, weights, live stats, canaries"
    )
    status.set_defaults(func=cmd_status)
    reload = sub.add_parser("reload", parents=[common], help="re-read the config file now")
    reload.set_defaults(func=lambda a: _run(a, "POST", "/admin/reload"))
    overrides = sub.add_parser(
        "overrides", parents=[common], help="a model's overrides: source, age, expiry, file value"
    )
    overrides.add_argument("--model", required=True)
    overrides.set_defaults(func=lambda a: _run(a, "GET", f"/admin/models/{a.model}/overrides"))
    _weights_commands(sub, common)
    _alias_commands(sub, common)
    registry = sub.add_parser("registry", help="the model registry").add_subparsers(
        dest="registry_cmd", required=True
    )
    rstatus = registry.add_parser(
        "status", parents=[common], help="what was read and when, refused versions and why"
    )
    rstatus.set_defaults(func=cmd_registry_status)
    canary = sub.add_parser("canary", parents=[common], help="canary status and actions")
    canary.add_argument("action", choices=CANARY_ACTIONS)
    canary.add_argument("model", nargs="?", help="the model (or --model)")
    canary.add_argument("--model", dest="model_opt", metavar="MODEL")
    canary.set_defaults(func=cmd_canary)


CANARY_ACTIONS = ("status", "pause", "resume", "promote", "rollback", "revert", "restart")


def _ttl(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False, parents=[common])
    parent.add_argument("--ttl", type=_seconds, help="expire after this long (e.g. 30m, 2h, 90s)")
    return parent


def _weights_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    weights = sub.add_parser("weights", help="routing weights").add_subparsers(
        dest="weights_cmd", required=True
    )
    wset = weights.add_parser(
        "set", parents=[_ttl(common)], help="e.g. weights set --model chat v1=90 v2=10"
    )
    wset.add_argument("--model", required=True)
    wset.add_argument("pairs", nargs="+", metavar="VERSION=WEIGHT")
    wset.set_defaults(func=cmd_weights_set)
    wclear = weights.add_parser(
        "clear", parents=[common], help="remove the override: the file's weights apply"
    )
    wclear.add_argument("--model", required=True)
    wclear.set_defaults(func=lambda a: _run(a, "DELETE", f"/admin/models/{a.model}/weights"))


def _alias_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    alias = sub.add_parser("alias", help="aliases").add_subparsers(dest="alias_cmd", required=True)
    aset = alias.add_parser(
        "set", parents=[_ttl(common)], help="e.g. alias set --model chat stable v2"
    )
    aset.add_argument("--model", required=True)
    aset.add_argument("alias")
    aset.add_argument("version")
    aset.set_defaults(
        func=lambda a: _run(
            a,
            "PUT",
            f"/admin/models/{a.model}/aliases/{a.alias}",
            _override({"version": a.version}, a),
        )
    )
    aclear = alias.add_parser(
        "clear", parents=[common], help="remove an alias override: the file's alias applies"
    )
    aclear.add_argument("--model", required=True)
    aclear.add_argument("alias")
    aclear.set_defaults(
        func=lambda a: _run(a, "DELETE", f"/admin/models/{a.model}/aliases/{a.alias}")
    )


def _seconds(text: str) -> float:
    """`90`, `90s`, `30m`, `2h`, `1d` → seconds (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


def _override(body: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """An override's body with its source (`cli:<user>`) and optional expiry."""
    user = "".join(c for c in os.environ.get("USER", "") if c.isalnum() or c in "_.-")[:40]
    body["source"] = f"cli:{user or 'unknown'}"
    if args.ttl is not None:
        body["ttl_s"] = args.ttl
    return body


def _client(args: argparse.Namespace) -> AdminClient:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise AdminError(0, {"error": {"message": f"set {TOKEN_ENV} to the gateway's admin token"}})
    return AdminClient(args.url, token)


def _run(args: argparse.Namespace, method: str, path: str, body: Any = None) -> int:
    try:
        data = _client(args).call(method, path, body)
    except (AdminError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2))
    return 0


def cmd_weights_set(args: argparse.Namespace) -> int:
    weights = {}
    for pair in args.pairs:
        vid, sep, value = pair.partition("=")
        try:
            weights[vid] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            print(f"error: expected VERSION=WEIGHT, got {pair!r}", file=sys.stderr)
            return 2
        if not weight_ok(weights[vid]):
            print(f"error: weight of {vid!r} {WEIGHT_RULE}, got {value!r}", file=sys.stderr)
            return 2
    body = _override({"weights": weights}, args)
    return _run(args, "PUT", f"/admin/models/{args.model}/weights", body)


def cmd_canary(args: argparse.Namespace) -> int:
    model = args.model or args.model_opt
    if not model:
        print("error: name the model (gateway canary ACTION MODEL)", file=sys.stderr)
        return 2
    if args.action == "status":
        return _run(args, "GET", f"/admin/models/{model}/canary")
    return _run(args, "POST", f"/admin/models/{model}/canary/{args.action}")


def cmd_status(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
        models = client.call("GET", "/admin/models")["data"]
        stats = {m["id"]: client.call("GET", f"/admin/models/{m['id']}/stats") for m in models}
        canaries = {m["id"]: _canary_or_none(client, m["id"]) for m in models}
    except (AdminError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"models": models, "stats": stats, "canaries": canaries}, indent=2))
    else:
        print(status_table(models, stats, canaries))
    return 0


def cmd_registry_status(args: argparse.Namespace) -> int:
    try:
        data = _client(args).call("GET", "/admin/registry")
    except (AdminError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if args.json else registry_table(data))
    return 0


def registry_table(data: dict[str, Any]) -> str:
    """The registry's state for people: one block per model, refusals with their reasons."""
    up = {True: "up", False: "DOWN", None: "not read yet"}[data.get("up")]
    lines = [f"registry {data.get('tracking_uri')}: {up}, last sync {_ago(data.get('last_sync'))}"]
    if data.get("last_error"):
        lines.append(f"  last error: {data['last_error']}")
    for name, model in (data.get("models") or {}).items():
        aliases = ", ".join(f"{a}→{v}" for a, v in model.get("aliases", {}).items()) or "-"
        read = _ago(model.get("read_at"))
        lines.append(
            f"{name} (registered {model.get('registered_model')}, read {read})"
            f": routable {', '.join(model.get('routable', [])) or '-'}; aliases {aliases}"
        )
        for problem in filter(None, (model.get("warning"), model.get("problem"))):
            lines.append(f"  ! {problem}")
        for vid, reason in model.get("refused", {}).items():
            lines.append(f"  refused {vid}: {reason}")
    for name in data.get("waiting", []):
        lines.append(f"{name}: waiting for the registry's first answer")
    for name, item in ((data.get("writeback") or {}).get("pending") or {}).items():
        lines.append(
            f"{name}: write-back of {item['rollout']} ({item['outcome']}) failing "
            f"after {item['attempts']} tries: {item['error']}"
        )
    return "\n".join(lines)


def _ago(when: Any) -> str:
    if not isinstance(when, int | float):
        return "never"
    return f"{max(time.time() - when, 0):.1f}s ago"


def _canary_or_none(client: AdminClient, model: str) -> Any:
    try:
        return client.call("GET", f"/admin/models/{model}/canary")
    except AdminError as exc:
        if exc.status in (404, 409):
            return None
        raise


def status_table(
    models: list[dict[str, Any]], stats: dict[str, Any], canaries: dict[str, Any]
) -> str:
    header = (
        f"{'MODEL':<14}{'VERSION':<10}{'WEIGHT':>8}{'REQ/S':>9}{'ERR%':>8}{'P95 MS':>9}"
        f"{'TTFT95':>9}  ALIASES / CANARY"
    )
    lines = [header]
    for model in models:
        name = model["id"]
        per_version = stats.get(name, {}).get("versions", {})
        canary = canaries.get(name)
        for v in model["versions"]:
            s = per_version.get(v["version"], {})
            extra = ",".join(v.get("aliases", [])) + _lineage(v.get("metadata") or {})
            if canary and v["version"] == canary.get("candidate"):
                extra += f" canary:{canary['state']} step {canary['step']} @{canary['weight']:g}%"
            lines.append(
                f"{name:<14}{v['version']:<10}{_pct(s.get('weight', v.get('weight'))):>8}"
                f"{_num(s.get('requests_per_s')):>9}{_pct(s.get('error_rate')):>8}"
                f"{_num(s.get('latency_p95_ms')):>9}{_num(s.get('ttft_p95_ms')):>9}  {extra}"
            )
    registry = next((s.get("registry") for s in stats.values() if s.get("registry")), None)
    if registry:
        lines.append(registry_table(registry).splitlines()[0])
    return "\n".join(lines)


def _lineage(meta: dict[str, Any]) -> str:
    """A version's lineage in brief: run and code commit (registry versions carry both)."""
    parts = [f"run {str(meta['run_id'])[:8]}" if meta.get("run_id") else ""]
    parts.append(f"commit {str(meta['code_version'])[:7]}" if meta.get("code_version") else "")
    text = " ".join(p for p in parts if p)
    return f" [{text}]" if text else ""


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}"


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"
