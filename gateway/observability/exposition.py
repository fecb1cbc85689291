"""A small Prometheus text-format (0.0.4) writer for the gateway's own metric families.

Owns series state and its rendering. Each series keeps its numbers in plain Python attributes and
lists and its sample-line prefix (`name{labels} `) formatted once, when the series is first
created: label values are escaped and sorted by label name then, never per scrape. A histogram
series stores one count per bucket (not cumulative); the cumulative `_bucket` values, `_count` and
`+Inf` are computed while rendering. Rendering is list appends and one join.

The output matches `prometheus_client.generate_latest` line for line (label order, float formatting
as its `floatToGoString`, HELP escaping, `_bucket`/`_count`/`_sum`), so families moved here from
prometheus_client scrape the same. Families are named as exported (counters with `_total`).

Not thread-safe, by design: the gateway records and renders on its one event-loop thread (each
`--workers` process has its own app and its own series). Nothing here bounds label values: the
callers pass only config names and closed sets (see `gateway.observability`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Literal, TypeVar

Kind = Literal["counter", "gauge", "histogram"]
Render = Callable[[list[str]], None]  # appends finished lines (each ending in "\n") to `out`


def number(value: float) -> str:
    """A sample value as prometheus_client's `floatToGoString` writes it (Go's formatting): below
    1e6 that is Python's repr of the float (`3` → `3.0`); from 1e6 an exponent (`1.5e+06`)."""
    value = float(value)
    if -math.inf < value < 1e6:
        return repr(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    dot = text.find(".")
    if dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_value(value: str) -> str:
    """A label value for inside double quotes: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_string(pairs: Iterable[tuple[str, str]]) -> str:
    """`{a="1",b="2"}` sorted by label name, or "" for no labels."""
    inner = ",".join(f'{name}="{escape_value(value)}"' for name, value in sorted(pairs))
    return f"{{{inner}}}" if inner else ""


def header(name: str, help_text: str, kind: Kind) -> str:
    """The HELP and TYPE lines of a family (help with backslash and newline escaped)."""
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"


class Value:
    """One counter or gauge series: a number and its pre-formatted line prefix."""

    __slots__ = ("prefix", "value")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value

    def render(self, out: list[str]) -> None:
        out.append(f"{self.prefix}{number(self.value)}\n")


class HistogramSeries:
    """One histogram series: a count per bucket (the last is +Inf) and the sum."""

    __slots__ = ("_bucket_prefixes", "_count_prefix", "_sum_prefix", "bounds", "counts", "sum")

    def __init__(self, name: str, bounds: tuple[float, ...], labels: dict[str, str]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        pairs = list(labels.items())
        les = [number(b) for b in (*bounds, math.inf)]
        self._bucket_prefixes = [
            f"{name}_bucket{label_string([*pairs, ('le', le)])} " for le in les
        ]
        self._count_prefix = f"{name}_count{label_string(pairs)} "
        self._sum_prefix = f"{name}_sum{label_string(pairs)} "

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose upper bound is >= it (Prometheus `le`)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def render(self, out: list[str]) -> None:
        total = 0
        for prefix, count in zip(self._bucket_prefixes, self.counts, strict=True):
            total += count
            out.append(f"{prefix}{number(total)}\n")
        out.append(f"{self._count_prefix}{number(total)}\n")
        out.append(f"{self._sum_prefix}{number(self.sum)}\n")


S = TypeVar("S", Value, HistogramSeries)
F = TypeVar("F", "ValueFamily", "HistogramFamily")


class Family(Generic[S]):
    """A named metric family: its header and its series, keyed by label values."""

    def __init__(self, name: str, help_text: str, kind: Kind, labelnames: Sequence[str]) -> None:
        self.name = name
        self.labelnames = tuple(labelnames)
        self._header = header(name, help_text, kind)
        self._series: dict[tuple[str, ...], S] = {}

    def labels(self, *values: str) -> S:
        """The series for these label values (in `labelnames` order), created on first use."""
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            series = self._series[values] = self._new(
                dict(zip(self.labelnames, values, strict=True))
            )
        return series

    def clear(self) -> None:
        """Forget every series (a labelled family then renders its header only)."""
        self._series.clear()

    def render(self, out: list[str]) -> None:
        out.append(self._header)
        for series in self._series.values():
            series.render(out)

    def _new(self, labels: dict[str, str]) -> S:
        raise NotImplementedError


class ValueFamily(Family[Value]):
    """A counter or gauge family. Without label names its one series exists from the start."""

    def __init__(
        self, name: str, help_text: str, kind: Kind, labelnames: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help_text, kind, labelnames)
        if not self.labelnames:
            self.labels()

    def _new(self, labels: dict[str, str]) -> Value:
        return Value(f"{self.name}{label_string(labels.items())} ")


class HistogramFamily(Family[HistogramSeries]):
    """A histogram family with fixed, increasing bucket upper bounds (+Inf is implied)."""

    def __init__(
        self, name: str, help_text: str, bounds: Sequence[float], labelnames: Sequence[str] = ()
    ) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds or math.isinf(bounds[-1]):
            raise ValueError(f"{name}: bucket bounds must be finite and strictly increasing")
        self.bounds = tuple(float(b) for b in bounds)
        super().__init__(name, help_text, "histogram", labelnames)
        if not self.labelnames:
            self.labels()

    def _new(self, labels: dict[str, str]) -> HistogramSeries:
        return HistogramSeries(self.name, self.bounds, labels)


class Exposition:
    """The families (and render callbacks) one scrape writes, in registration order."""

    def __init__(self) -> None:
        self._parts: list[Render] = []

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> ValueFamily:
        if not name.endswith("_total"):
            raise ValueError(f"{name}: counters are exported with a _total suffix")
        return self.add(ValueFamily(name, help_text, "counter", labelnames))

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> ValueFamily:
        return self.add(ValueFamily(name, help_text, "gauge", labelnames))

    def histogram(
        self, name: str, help_text: str, bounds: Sequence[float], labelnames: Sequence[str] = ()
    ) -> HistogramFamily:
        return self.add(HistogramFamily(name, help_text, bounds, labelnames))

    def add(self, family: F) -> F:
        self._parts.append(family.render)
        return family

    def add_render(self, render: Render) -> None:
        """A callback that writes whole families of its own at scrape time."""
        self._parts.append(render)

    def render(self) -> str:
        out: list[str] = []
        for part in self._parts:
            part(out)
        return "".join(out)
