"""A small PromQL reader: which metric names, functions and labels an expression uses.

Not a full parser, but it tokenises the language properly: string literals, durations and
subquery ranges, numbers, Grafana variables (`$node`, `${node:regex}`, `[[node]]`,
`$__rate_interval`), label matchers inside `{...}`, grouping clauses (`by`, `without`, `on`,
`ignoring`, `group_left`, `group_right`), aggregation operators, binary keywords and function
calls. An identifier that is followed by `(` must be a known PromQL function or aggregation,
so a misspelt function is an error rather than a silently accepted metric name. Grafana's
variable-query helpers (`label_values(metric, label)`, `query_result(expr)`) are read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FUNCTIONS: frozenset[str] = _words(
    """abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min
    count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase irate label_join label_replace
    last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month
    predict_linear present_over_time quantile_over_time rate resets round scalar sgn sort
    sort_desc sqrt start end stddev_over_time stdvar_over_time sum_over_time time timestamp
    vector year acos acosh asin asinh atan atanh cos cosh deg pi rad sin sinh tan tanh"""
)
AGGREGATIONS: frozenset[str] = _words(
    "sum avg count min max group stddev stdvar topk bottomk quantile count_values"
)
KEYWORDS: frozenset[str] = _words(
    "by without on ignoring group_left group_right bool and or unless offset atan2"
)
#: Grafana's Prometheus variable-query helpers.
GRAFANA_HELPERS: frozenset[str] = frozenset({"label_values", "query_result", "label_names"})
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_NUMBER_WORDS = frozenset({"inf", "nan"})
_MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\])
  | (?P<range>\[[^\]\[]*\])
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},@])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """An expression this reader cannot make sense of."""


@dataclass
class QueryNames:
    """What one expression uses."""

    metrics: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)  # in matchers and grouping clauses
    selectors: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # metric, labels


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str


def tokenize(expr: str) -> list[_Tok]:
    """Tokens of `expr` without whitespace; PromQLError on a character it does not know."""
    out: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLError(f"unexpected {expr[pos]!r} at {pos} in {expr!r}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append(_Tok(kind, m.group()))
        pos = m.end()
    return out


def read(expr: str) -> QueryNames:
    """Metric names, functions and labels used by a PromQL expression or Grafana helper."""
    names = QueryNames()
    toks = tokenize(expr)
    _check_balanced(toks, expr)
    i = 0
    while i < len(toks):
        tok = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if tok.kind == "op" and tok.text == "{":
            i = _matchers(toks, i, None, names)
            continue
        if tok.kind != "ident":
            i += 1
            continue
        word = tok.text
        if word in _GROUPING:
            i = _grouping(toks, i + 1, names)
            continue
        if word in KEYWORDS or word.lower() in _NUMBER_WORDS:
            i += 1
            continue
        if word in GRAFANA_HELPERS and nxt is not None and nxt.text == "(":
            names.functions.add(word)
            i = _grafana_helper(toks, i, names)
            continue
        if word in AGGREGATIONS and nxt is not None and (nxt.text == "(" or nxt.text in _GROUPING):
            names.functions.add(word)
            i += 1
            continue
        if nxt is not None and nxt.text == "(":
            if word not in FUNCTIONS:
                raise PromQLError(f"unknown function {word!r} in {expr!r}")
            names.functions.add(word)
            i += 1
            continue
        # a metric name, possibly with matchers
        names.metrics.add(word)
        if nxt is not None and nxt.text == "{":
            i = _matchers(toks, i + 1, word, names)
        else:
            names.selectors.append((word, frozenset()))
            i += 1
    return names


def _check_balanced(toks: list[_Tok], expr: str) -> None:
    depth = {"(": 0, "{": 0}
    closing = {")": "(", "}": "{"}
    for tok in toks:
        if tok.kind != "op":
            continue
        if tok.text in depth:
            depth[tok.text] += 1
        elif tok.text in closing:
            depth[closing[tok.text]] -= 1
            if depth[closing[tok.text]] < 0:
                raise PromQLError(f"unbalanced {tok.text!r} in {expr!r}")
    if any(depth.values()):
        raise PromQLError(f"unclosed bracket in {expr!r}")


def _matchers(toks: list[_Tok], start: int, metric: str | None, names: QueryNames) -> int:
    """Read `{label op value, ...}` from toks[start] == "{"; returns the index after `}`."""
    labels: set[str] = set()
    i = start + 1
    while i < len(toks) and toks[i].text != "}":
        tok = toks[i]
        op = toks[i + 1] if i + 1 < len(toks) else None
        value = toks[i + 2] if i + 2 < len(toks) else None
        if tok.kind == "ident" and op is not None and op.text in _MATCH_OPS:
            if tok.text != "__name__":
                labels.add(tok.text)
            elif op.text == "=" and value is not None and value.kind == "string":
                metric = value.text[1:-1]
                names.metrics.add(metric)
            i += 3
            continue
        i += 1
    names.labels |= labels
    if metric is not None:
        names.selectors.append((metric, frozenset(labels)))
    return i + 1


def _grouping(toks: list[_Tok], start: int, names: QueryNames) -> int:
    """Read an optional `( label, ... )` after a grouping keyword."""
    if start >= len(toks) or toks[start].text != "(":
        return start  # group_left without a label list
    i = start + 1
    while i < len(toks) and toks[i].text != ")":
        if toks[i].kind == "ident":
            names.labels.add(toks[i].text)
        i += 1
    return i + 1


def _grafana_helper(toks: list[_Tok], start: int, names: QueryNames) -> int:
    """`label_values(expr, label)` or `label_values(label)`; query_result(expr) is plain PromQL."""
    word = toks[start].text
    if word != "label_values":
        return start + 2
    depth, i, comma = 0, start + 1, None
    while i < len(toks):
        text = toks[i].text
        if text in "({":
            depth += 1
        elif text in ")}":
            depth -= 1
            if depth == 0:
                break
        elif text == "," and depth == 1:
            comma = i
        i += 1
    end = i
    if comma is None:
        # label_values(label): every series' values of that label
        names.labels.update(t.text for t in toks[start + 2 : end] if t.kind == "ident")
        return end + 1
    names.labels.update(t.text for t in toks[comma + 1 : end] if t.kind == "ident")
    inner = read(" ".join(t.text for t in toks[start + 2 : comma]))
    names.metrics |= inner.metrics
    names.functions |= inner.functions
    names.labels |= inner.labels
    names.selectors += inner.selectors
    return end + 1
