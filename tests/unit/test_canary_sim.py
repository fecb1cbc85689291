"""The operating-characteristics harness (bench/canary_sim.py) runs and its checks can fail.

`--quick` runs five scenarios on 200 seeded canaries each through the real judge. The bounds
below are the harness's own targets with tolerances from n (3 standard errors), re-checked here
from its JSON so that a harness that reported nothing, or the wrong thing, fails."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_meets_every_target(tmp_path: Path) -> None:
    out = tmp_path / "oc.json"
    script = ROOT / "bench" / "canary_sim.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    rows = {r["scenario"]: r for r in json.loads(out.read_text())}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(rows) == 5 and all(r["runs"] == 200 for r in rows.values())

    def at_most(name: str, alpha: float) -> None:
        r = rows[name]
        assert r["rate"] <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / r["runs"]), r

    at_most("A/A, 1 % errors", 0.05)
    at_most("incident: both 100 % for 30 s", 0.05)
    at_most("sticky sessions (400, heavy-tailed), judged by session", 0.05)
    assert rows["errors 5× (2 % → 10 %)"]["rate"] == 1.0
    assert rows["SRM: candidate gets half its share, frozen within 70 s"]["rate"] >= 0.9
    promoted = rows["A/A, 1 % errors"]["outcomes"].get("safety→promoted", 0)
    assert (
        promoted >= 0.8 * 200
    )  # an equal candidate is mostly promoted, not only "not rolled back"
