"""Aggregation and tables for ``bench/run.py``: medians, derived ratios, TTFB summary, Markdown."""

from __future__ import annotations

import statistics
from typing import Any

TARGETS = ("direct", "floor", "gateway")
METRICS = ("rps", "p50_ms", "p99_ms")
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


def derive(
    med: Medians, latencies: tuple[int, ...], connections: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Per (latency, connections): gateway/floor rps and p50 overheads versus direct."""
    rows = []
    for latency in latencies:
        for conns in connections:
            d, f, g = (med[(latency, conns, t)] for t in TARGETS)
            rows.append(
                {
                    "latency_ms": latency,
                    "connections": conns,
                    "gateway_over_floor_rps": g["rps"] / f["rps"],
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


def table_lines(med: Medians, derived: list[dict[str, Any]]) -> list[str]:
    """The medians as a Markdown table (also readable as plain text)."""
    head = (
        "| lat | conns | "
        + " | ".join(f"{t} rps | {t} p50 | {t} p99" for t in TARGETS)
        + " | gw/floor rps | gw p50 − direct | floor p50 − direct |"
    )
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for row in derived:
        lat, conns = row["latency_ms"], row["connections"]
        cells = [f"{lat} ms", str(conns)]
        for t in TARGETS:
            m = med[(lat, conns, t)]
            cells += [f"{m['rps']:.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}"]
        cells += [
            f"{row['gateway_over_floor_rps']:.2f}",
            f"{row['gateway_p50_overhead_ms']:+.2f} ms",
            f"{row['floor_p50_overhead_ms']:+.2f} ms",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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
