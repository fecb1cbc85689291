"""Aggregation and tables for ``bench/run.py``: medians, derived ratios, TTFB summary, Markdown."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

TARGETS = ("direct", "floor", "gateway")
METRICS = ("rps", "p50_ms", "p99_ms", "proxy_cpu_us_per_req")
ROOT = Path(__file__).resolve().parent.parent
Medians = dict[tuple[int, int, str], dict[str, float]]


def medians(samples: list[dict[str, Any]]) -> Medians:
    """Median rps/p50/p99 per (latency, connections, target) over the repeats."""
    groups: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault((s["latency_ms"], s["connections"], s["target"]), []).append(s)
    return {
        key: {m: statistics.median(s[m] for s in group) for m in METRICS}
        for key, group in groups.items()
    }


def paired_ratios(samples: list[dict[str, Any]], latency: int, conns: int) -> list[float]:
    """gateway rps / floor rps within each repeat (adjacent runs, so host drift cancels)."""
    by_rep: dict[int, dict[str, float]] = {}
    for s in samples:
        if s["latency_ms"] == latency and s["connections"] == conns:
            by_rep.setdefault(s["repeat"], {})[s["target"]] = s["rps"]
    return [r["gateway"] / r["floor"] for _, r in sorted(by_rep.items())]


def derive(
    med: Medians,
    samples: list[dict[str, Any]],
    latencies: tuple[int, ...],
    conns_set: tuple[int, ...],
) -> list[dict[str, Any]]:
    """Per (latency, connections): gateway/floor rps and p50 overheads versus direct."""
    rows = []
    for latency in latencies:
        for conns in conns_set:
            d, f, g = (med[(latency, conns, t)] for t in TARGETS)
            paired = paired_ratios(samples, latency, conns)
            rows.append(
                {
                    "latency_ms": latency,
                    "connections": conns,
                    "gateway_over_floor_rps": g["rps"] / f["rps"],
                    "gateway_over_floor_rps_per_repeat": paired,
                    "gateway_over_floor_rps_paired_median": statistics.median(paired),
                    "gateway_over_floor_by_cpu": f["proxy_cpu_us_per_req"]
                    / g["proxy_cpu_us_per_req"],
                    "gateway_p50_overhead_ms": g["p50_ms"] - d["p50_ms"],
                    "floor_p50_overhead_ms": f["p50_ms"] - d["p50_ms"],
                }
            )
    return rows


def summarize_ttfb(ttfb: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median over repeats of each target's p50/p99, and the overhead versus direct."""
    out: dict[str, dict[str, float]] = {}
    for name in TARGETS:
        rows = [r for r in ttfb if r["target"] == name]
        out[name] = {m: statistics.median(r[m] for r in rows) for m in ("p50_ms", "p99_ms")}
    for name in ("floor", "gateway"):
        for m in ("p50_ms", "p99_ms"):
            out[name][f"overhead_{m}"] = out[name][m] - out["direct"][m]
    return out


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_lines(med: Medians, derived: list[dict[str, Any]]) -> list[str]:
    """Two Markdown tables of the medians: throughput with ratios, then latency with overheads."""
    rps = [
        "| upstream | conns | direct rps | floor rps | gateway rps | gw/floor | gw/floor paired "
        "| CPU µs/req floor / gw | gw/floor by CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lat = [
        "| upstream | conns | direct p50 / p99 | floor p50 / p99 | gateway p50 / p99 "
        "| floor p50 − direct | gw p50 − direct |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in derived:
        key = (row["latency_ms"], row["connections"])
        m = {t: med[(*key, t)] for t in TARGETS}
        head = [f"{key[0]} ms", str(key[1])]
        rps.append(
            _row(
                [
                    *head,
                    *(f"{m[t]['rps']:.0f}" for t in TARGETS),
                    f"**{row['gateway_over_floor_rps']:.2f}**",
                    f"{row['gateway_over_floor_rps_paired_median']:.2f}",
                    " / ".join(f"{m[t]['proxy_cpu_us_per_req']:.0f}" for t in ("floor", "gateway")),
                    f"{row['gateway_over_floor_by_cpu']:.2f}",
                ]
            )
        )
        lat.append(
            _row(
                [
                    *head,
                    *(f"{m[t]['p50_ms']:.2f} / {m[t]['p99_ms']:.2f} ms" for t in TARGETS),
                    f"{row['floor_p50_overhead_ms']:+.2f} ms",
                    f"{row['gateway_p50_overhead_ms']:+.2f} ms",
                ]
            )
        )
    return [*rps, "", *lat]


def ttfb_lines(ttfb: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| target | TTFB p50 | TTFB p99 | overhead p50 | overhead p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in TARGETS:
        t = ttfb[name]
        over = (
            ("—", "—")
            if name == "direct"
            else (f"{t['overhead_p50_ms']:+.3f} ms", f"{t['overhead_p99_ms']:+.3f} ms")
        )
        lines.append(
            f"| {name} | {t['p50_ms']:.3f} ms | {t['p99_ms']:.3f} ms | {over[0]} | {over[1]} |"
        )
    return lines


def noise_lines(samples: list[dict[str, Any]]) -> list[str]:
    """Runs disturbed by other processes on the machine (kept ones and retried ones)."""
    retried = sum(1 for s in samples if s["rejected_attempts"])
    kept = [s for s in samples if s["noisy"]]
    proxied = [s for s in samples if s["target"] != "direct"]
    worst = max((s["core0_foreign_pct"] for s in proxied), default=0.0)
    lines = [
        f"Interference: {retried}/{len(samples)} runs were re-run for foreign CPU load; "
        f"{len(kept)} kept runs are still noisy; worst kept foreign load on the proxy core: "
        f"{worst:.0f}%."
    ]
    lines += [
        f"  noisy: r{s['repeat']} {s['latency_ms']} ms c{s['connections']} {s['target']} "
        f"(foreign core0 {s['core0_foreign_pct']:.0f}%, core1 {s['core1_foreign_pct']:.0f}%)"
        for s in kept
    ]
    return lines


def machine_notes(proxy_core: str, load_core: str) -> dict[str, Any]:
    """Date, command, machine, tool versions, git state of gateway/ and the pinning."""
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
        "git_head": _git("rev-parse", "HEAD").strip(),
        "gateway_digest": source_digest(),
        "git_dirty": _git("status", "--porcelain", "--", "gateway").splitlines(),
        "pinning": {"proxy_under_test": proxy_core, "mocks_wrk_harness": load_core},
    }


def source_digest() -> str:
    """A hash of the gateway package's source, to notice it changing under a long run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=ROOT)
    return out.stdout


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {path}")
