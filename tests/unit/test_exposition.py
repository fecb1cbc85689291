"""The exposition writer: exact text, escaping, bucket cumulation, sameness with prometheus_client,
and the recorder's label bounding (client input never creates a series)."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.utils import floatToGoString

from gateway.config import parse_config
from gateway.exchange import Exchange
from gateway.observability.exposition import Exposition, label_string, number
from gateway.observability.metrics import Metrics
from gateway.routing.table import Registry

TINY = """\
# HELP demo_requests_total Requests by path
# TYPE demo_requests_total counter
demo_requests_total{code="200",path="/a"} 3.0
demo_requests_total{code="500",path="/b"} 1.0
# HELP demo_inflight In progress
# TYPE demo_inflight gauge
demo_inflight 2.5
# HELP demo_seconds Latency
# TYPE demo_seconds histogram
demo_seconds_bucket{le="0.1",route="x"} 1.0
demo_seconds_bucket{le="1.0",route="x"} 3.0
demo_seconds_bucket{le="+Inf",route="x"} 4.0
demo_seconds_count{route="x"} 4.0
demo_seconds_sum{route="x"} 7.6
"""


def tiny() -> Exposition:
    x = Exposition()
    requests = x.counter("demo_requests_total", "Requests by path", ("path", "code"))
    requests.labels("/a", "200").inc(3)
    requests.labels("/b", "500").inc()
    x.gauge("demo_inflight", "In progress").labels().set(2.5)
    seconds = x.histogram("demo_seconds", "Latency", (0.1, 1), ("route",)).labels("x")
    for value in (0.1, 0.5, 1.0, 6.0):  # a value equal to a bound counts in that bucket
        seconds.observe(value)
    return x


def test_exact_text_of_a_tiny_exposition() -> None:
    assert tiny().render() == TINY


def test_histogram_buckets_are_cumulated_at_render_time() -> None:
    x = Exposition()
    h = x.histogram("h_seconds", "H", (1, 2, 4)).labels()
    for value in (0.5, 3, 3, 100):
        h.observe(value)
    assert h.counts == [1, 0, 2, 1]  # stored per bucket, the last one +Inf
    lines = x.render().splitlines()
    assert lines[2:] == [
        'h_seconds_bucket{le="1.0"} 1.0',
        'h_seconds_bucket{le="2.0"} 1.0',
        'h_seconds_bucket{le="4.0"} 3.0',
        'h_seconds_bucket{le="+Inf"} 4.0',
        "h_seconds_count 4.0",
        "h_seconds_sum 106.5",
    ]


def test_label_values_and_help_are_escaped() -> None:
    x = Exposition()
    family = x.gauge("g", 'Help with \\ backslash,\nnewline and "quotes"', ("a",))
    family.labels('q"uo\\te\nnl').set(1)
    assert x.render() == (
        '# HELP g Help with \\\\ backslash,\\nnewline and "quotes"\n'
        "# TYPE g gauge\n"
        'g{a="q\\"uo\\\\te\\nnl"} 1.0\n'
    )
    assert label_string([("z", "1"), ("a", "é")]) == '{a="é",z="1"}'
    assert label_string([]) == ""


VALUES = [0, 1, 3, 0.1, 1e-7, 999_999.0, 999_999.9, 1e6, 1_234_567.0, 1.5e6, 1e15, 1e16, 1e22]
VALUES += [-1, -5e6, -1e22, math.inf, -math.inf, math.nan, 2**53 + 1, 0.1 + 0.2, True]


@pytest.mark.parametrize("value", VALUES)
def test_numbers_are_formatted_as_prometheus_client_does(value: float) -> None:
    assert number(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


def test_matches_prometheus_client_line_for_line() -> None:
    """The same series through prometheus_client and through the writer scrape the same."""
    reg = CollectorRegistry()
    c = Counter("t_events", "Events \\ by kind\nand more", ["kind", "model"], registry=reg)
    g = Gauge("t_level", "Level", ["model"], registry=reg)
    h = Histogram("t_seconds", "Seconds", ["model"], buckets=(0.005, 0.25, 2.5), registry=reg)
    x = Exposition()
    xc = x.counter("t_events_total", "Events \\ by kind\nand more", ("kind", "model"))
    xg = x.gauge("t_level", "Level", ("model",))
    xh = x.histogram("t_seconds", "Seconds", (0.005, 0.25, 2.5), ("model",))
    for i, model in enumerate(["a", 'b"\\\n', "ünï"]):
        for kind, amount in (("p", 3), ("q", 1_500_000 * (i + 1))):
            c.labels(kind, model).inc(amount)
            xc.labels(kind, model).inc(amount)
        g.labels(model).set(0.1 * i - 7)
        xg.labels(model).set(0.1 * i - 7)
        for value in (0.001, 0.005, 0.3, 0.1 + i, 99.0, 2.5):
            h.labels(model).observe(value)
            xh.labels(model).observe(value)
    want = generate_latest(reg).decode()
    for name in ("t_events", "t_seconds"):  # prometheus_client adds *_created series
        want = "\n".join(line for line in want.split("\n") if f"{name}_created" not in line)
    assert x.render() == want


def test_mistakes_are_refused() -> None:
    x = Exposition()
    with pytest.raises(ValueError, match="_total"):
        x.counter("requests", "no suffix")
    with pytest.raises(ValueError, match="increasing"):
        x.histogram("h", "H", (1, 0.5))
    with pytest.raises(ValueError, match="increasing"):
        x.histogram("h", "H", (1, math.inf))
    with pytest.raises(ValueError, match="expected labels"):
        x.gauge("g", "G", ("a", "b")).labels("only-one")


def test_cleared_family_renders_its_header_only() -> None:
    x = Exposition()
    info = x.gauge("i", "Info", ("revision",))
    info.labels("old").set(1)
    info.clear()
    info.labels("new").set(1)
    assert x.render().splitlines()[2:] == ['i{revision="new"} 1.0']


CONFIG = """
models:
  chat:
    versions:
      v1: {upstream: {url: 'http://127.0.0.1:9/v1', model: x}}
"""


def recorder() -> Metrics:
    metrics = Metrics()
    metrics.use_registry(Registry.build(parse_config(CONFIG, {}), {}), "rev1")
    return metrics


def served(model: str | None, version: str | None, outcome: str = "success") -> Exchange:
    return Exchange(
        "r", "/v1/chat/completions", 0.0, model=model, version=version, outcome=outcome,
        ttft=0.04, duration=0.3, upstream_wait=0.0395, prompt_tokens=5, completion_tokens=7,
    )  # fmt: skip


def test_labels_are_bounded_to_the_config() -> None:
    metrics = recorder()
    metrics.record(served("chat", "v1"))
    metrics.record(served("chat", "v1"))
    metrics.record(served("chat", "v9-from-a-client"))  # not a configured version
    metrics.record(served(None, None, "client_error"))  # model never resolved
    metrics.record(served("junk-model", "junk-version"))
    text = metrics.scrape().decode()
    ok = 'key="anonymous",model="chat",outcome="success",version="v1"'
    assert f"gateway_requests_total{{{ok}}} 2.0\n" in text
    assert 'model="chat",outcome="success",version="other"' not in text
    other = 'key="anonymous",model="other",outcome="success",version="other"'
    assert f"gateway_requests_total{{{other}}} 2.0\n" in text
    none = 'key="anonymous",model="other",outcome="client_error",version="none"'
    assert f"gateway_requests_total{{{none}}} 1.0\n" in text
    tokens = 'key="anonymous",kind="completion",model="chat",version="v1"'
    assert f"gateway_tokens_total{{{tokens}}} 14.0\n" in text
    assert 'gateway_ttft_seconds_bucket{le="0.05",model="chat",version="v1"} 2.0\n' in text
    assert 'gateway_request_duration_seconds_count{model="chat",version="v1"} 2.0\n' in text
    assert 'gateway_overhead_seconds_bucket{le="0.001"} 4.0\n' in text  # not the refusal
    assert 'gateway_config_info{revision="rev1"} 1.0\n' in text
    assert "junk" not in text and "v9" not in text


def test_key_label_is_bounded_to_the_configured_key_ids() -> None:
    metrics = Metrics()
    metrics.use_registry(Registry.build(parse_config(CONFIG, {}), {}), "rev1", ("team-a",))
    for client in ("team-a", "team-a", "", "not-a-configured-id"):
        ex = served("chat", "v1")
        ex.client = client
        metrics.record(ex)
    text = metrics.scrape().decode()
    line = 'gateway_requests_total{{key="{}",model="chat",outcome="success",version="v1"}} {}\n'
    assert line.format("team-a", "2.0") in text
    assert line.format("anonymous", "1.0") in text
    assert line.format("other", "1.0") in text
    assert "not-a-configured-id" not in text
    tokens = 'gateway_tokens_total{key="team-a",kind="prompt",model="chat",version="v1"} 10.0\n'
    assert tokens in text


def test_refusals_are_counted_by_outcome_and_draw_no_latency_line() -> None:
    metrics = recorder()
    for outcome in ("rejected", "throttled"):
        metrics.record(served("chat", None, outcome))
    text = metrics.scrape().decode()
    for outcome in ("rejected", "throttled"):
        labels = f'key="anonymous",model="chat",outcome="{outcome}",version="none"'
        assert f"gateway_requests_total{{{labels}}} 1.0\n" in text
    assert 'version="none"' not in "".join(
        line
        for line in text.splitlines()
        if line.startswith(("gateway_request_duration", "gateway_ttft"))
    )
