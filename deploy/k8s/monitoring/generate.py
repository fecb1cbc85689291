"""Render the PrometheusRule from deploy/prometheus/alerts.yml, the one source of the rules.

The compose stack's Prometheus loads alerts.yml as a rule file; Kubernetes users of the
Prometheus operator get the same groups inside a `PrometheusRule`. Run after editing alerts.yml:

    python3 deploy/k8s/monitoring/generate.py          # rewrite prometheusrule.yaml
    python3 deploy/k8s/monitoring/generate.py --check  # exit 1 if it is stale (the tests do this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1] / "prometheus" / "alerts.yml"
TARGET = HERE / "prometheusrule.yaml"
HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/k8s/monitoring/generate.py: edit the source
# and re-run the script (a test fails when this file is stale). The same recording and alert rules
# as the compose stack, for the Prometheus operator; `release` is the label the operator's
# `ruleSelector` commonly matches (kube-prometheus-stack) -- change it to whatever yours selects.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, as a person would write."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render() -> str:
    groups = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "llm-gateway",
            "labels": {
                "app.kubernetes.io/name": "llm-gateway",
                "app.kubernetes.io/component": "gateway",
                "release": "prometheus",
            },
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
