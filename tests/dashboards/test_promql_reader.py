"""The PromQL reader tells metric names from functions, keywords, labels and variables."""

from __future__ import annotations

import pytest

from dashboards.promql import PromQLError, read


@pytest.mark.parametrize(
    ("expr", "metrics", "functions", "labels"),
    [
        ('DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"}',
         {"DCGM_FI_DEV_GPU_TEMP"}, set(), {"instance", "gpu"}),
        ("sum by (state) (gpufleet_nodes)", {"gpufleet_nodes"}, {"sum"}, {"state"}),
        ("sum(gpufleet_nodes) by (state)", {"gpufleet_nodes"}, {"sum"}, {"state"}),
        ('histogram_quantile(0.99, sum by (le) (rate(x_bucket{job="a"}[$__rate_interval])))',
         {"x_bucket"}, {"histogram_quantile", "sum", "rate"}, {"le", "job"}),
        ("(a) * on(instance) group_left(hostname) b{hostname=~\"$node\"} == 1",
         {"a", "b"}, set(), {"instance", "hostname"}),
        ("increase(c_total[15m]) > 0 or (c_total unless c_total offset 15m)",
         {"c_total"}, {"increase"}, set()),
        ("time() - last_ts > 300", {"last_ts"}, {"time"}, set()),
        ("floor(x / 4) % 2 + 1e6 * -0.5", {"x"}, {"floor"}, set()),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}, {"label_replace"}, set()),
        ("topk(10, max without (gpu) (m))", {"m"}, {"topk", "max"}, {"gpu"}),
        ('{__name__="named", job="x"}', {"named"}, set(), {"job"}),
        ("m @ start()", {"m"}, {"start"}, set()),
        ("rate(m[5m:1m]) and bool on() vector(1)", {"m"}, {"rate", "vector"}, set()),
        ("label_values(DCGM_FI_DEV_GPU_TEMP, gpu)", {"DCGM_FI_DEV_GPU_TEMP"},
         {"label_values"}, {"gpu"}),
        ('label_values(up{job="a"}, instance)', {"up"}, {"label_values"}, {"job", "instance"}),
        ("query_result(count by (hostname, Hostname) (m))", {"m"}, {"query_result", "count"},
         {"hostname", "Hostname"}),
        ("sum(m{a=\"x{y}\"}) by (b)", {"m"}, {"sum"}, {"a", "b"}),
        ("inf * nan + m", {"m"}, set(), set()),
    ],
)  # fmt: skip
def test_read(expr: str, metrics: set[str], functions: set[str], labels: set[str]) -> None:
    names = read(expr)

    assert (names.metrics, names.functions, names.labels) == (metrics, functions, labels)


def test_selectors_pair_each_metric_with_its_own_matchers() -> None:
    names = read('(a{x="1"} or a{y="2"}) * on(instance) group_left b{hostname=~"$node"}')

    assert sorted(names.selectors, key=lambda s: (s[0], sorted(s[1]))) == [
        ("a", frozenset({"x"})), ("a", frozenset({"y"})), ("b", frozenset({"hostname"})),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "expr",
    ["sum(rate(m[5m])", 'm{a="1"', "m)", "rates(m[5m])", "m ? 1"],
)
def test_rejects_what_is_not_promql(expr: str) -> None:
    with pytest.raises(PromQLError):
        read(expr)
