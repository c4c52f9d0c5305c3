"""A small PromQL checker: tokenises an expression the way Prometheus' lexer does, checks
its structure (balanced brackets, known functions and aggregations, valid durations and
label matchers, a range only after a selector) and returns the metric names it selects.

Not the whole grammar: enough that a typo in a rule or a dashboard query (an unknown
function, a missing bracket, a bad duration, a misspelt metric) fails a test instead of
a Prometheus reload. No PromQL parser is packaged for Python here, and promtool is Go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "ln",
        "log10",
        "log2",
        "minute",
        "month",
        "predict_linear",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sort_by_label",
        "sort_by_label_desc",
        "sqrt",
        "time",
        "timestamp",
        "vector",
        "year",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "quantile_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
        "mad_over_time",
        "double_exponential_smoothing",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "cos",
        "cosh",
        "sin",
        "sinh",
        "tan",
        "tanh",
        "deg",
        "rad",
        "pi",
    ]
)
AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"}) | GROUPING
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# Range functions need a range vector argument: rate(x) without [5m] is a Prometheus error.
RANGE_FUNCTIONS = frozenset(
    {"rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "predict_linear"}
    | {name for name in FUNCTIONS if name.endswith("_over_time")}
)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<duration>(?<=\[)[0-9a-z:]+(?=\])|(?<=offset\s)\d+[a-z]+)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise PromQLError(f"unexpected character {expr[position]!r} at {position}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    return tokens


def metric_names(expr: str) -> set[str]:
    """Check ``expr`` and return the metric names it selects (raises PromQLError)."""
    tokens = tokenize(expr)
    names: set[str] = set()
    stack: list[tuple[str, str]] = []  # (bracket, what opened it)
    expect_label_list = False
    previous: Token | None = None
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        inside = stack[-1] if stack else None
        if token.kind == "op" and token.text in "({[":
            opener = previous.text if previous is not None and previous.kind == "ident" else ""
            if token.text == "(" and expect_label_list:
                opener = "labels"
            if token.text == "[" and not _selects(previous):
                raise PromQLError(f"a range [..] must follow a selector or ')' at {token.position}")
            stack.append((token.text, opener))
            expect_label_list = False
        elif token.kind == "op" and token.text in ")}]":
            if not stack or {"(": ")", "{": "}", "[": "]"}[stack[-1][0]] != token.text:
                raise PromQLError(f"unbalanced {token.text!r} at {token.position}")
            bracket, opener = stack.pop()
            if bracket == "(" and opener in RANGE_FUNCTIONS and not (previous and previous.text == "]"):
                raise PromQLError(f"{opener}() needs a range vector, e.g. [5m]")
        elif token.kind == "duration":
            if not DURATION.match(token.text.split(":")[0]) or (
                ":" in token.text and token.text.split(":")[1] and not DURATION.match(token.text.split(":")[1])
            ):
                raise PromQLError(f"bad duration {token.text!r}")
        elif token.kind == "ident":
            word = token.text
            if inside is not None and inside[0] == "{":
                # A label name: it must be followed by a matcher and a string.
                if following is None or following.text not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"label {word!r} needs a matcher at {token.position}")
            elif inside is not None and inside[1] == "labels":
                pass  # by (...), on (...), group_left (...)
            elif word in GROUPING:
                expect_label_list = True
            elif following is not None and following.text == "(":
                if word not in FUNCTIONS and word not in AGGREGATIONS:
                    raise PromQLError(f"unknown function {word!r}")
            elif word.lower() in KEYWORDS or word in AGGREGATIONS:
                pass
            else:
                names.add(word)
        elif token.kind == "string" and inside is not None and inside[0] == "{":
            if previous is None or previous.text not in ("=", "!=", "=~", "!~"):
                raise PromQLError(f"string without a matcher at {token.position}")
            if previous.text in ("=~", "!~"):
                try:
                    re.compile(_unquote(token.text))
                except re.error as exc:
                    raise PromQLError(f"bad regular expression {token.text}: {exc}") from exc
        previous = token
    if stack:
        raise PromQLError(f"unclosed {stack[-1][0]!r}")
    if not tokens:
        raise PromQLError("empty expression")
    return names


def _selects(token: Token | None) -> bool:
    return token is not None and (token.kind == "ident" or token.text in ("}", ")"))


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body if text[0] == "`" else body.encode().decode("unicode_escape")


def exported_family(name: str, families: dict[str, str]) -> bool:
    """Whether ``name`` (as a query writes it) is a sample of one of ``families`` ({name:
    type} from the ``# TYPE`` lines of /metrics)."""
    if name in families:
        return True
    for suffix, kinds in (
        ("_total", {"counter"}),
        ("_created", {"counter", "histogram", "summary"}),
        ("_bucket", {"histogram"}),
        ("_sum", {"histogram", "summary"}),
        ("_count", {"histogram", "summary"}),
    ):
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) in kinds:
            return True
    return False


def families_of(exposition: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            found[name] = kind.strip()
    return found
