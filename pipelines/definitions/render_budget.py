"""Bounds on one render: templates are code from anyone, so no row may hang or exhaust a worker.

Every render of a row (its `template_vars`, answer choices, inputs and targets together) runs under
a `RenderBudget`:

- `max_operations` (default `MAX_OPERATIONS`): steps the sandbox counts, namely calls (macros,
  methods, globals), attribute and item lookups, intercepted operators, loop iterations over
  `range` and chunks of output. It is the time budget, and it is deterministic: the same row fails
  the same way on any machine, so outputs stay byte-identical.
- `seconds` (default `RENDER_SECONDS`): a wall-clock backstop checked at the same points, far above
  any normal render (tens of microseconds), for work between counted steps.
- `max_chars` (default `MAX_CHARS`): the largest string or sequence a render may produce or hold.
  Operations whose result size is known beforehand (`'a' * 10**9`, `[x] * n`, `s ~ t` via `+`,
  `center(n)`, `indent`, `replace`, `format` widths, `lipsum(n)`, `join`) are refused *before*
  allocating; everything else is checked as it is produced (call results, looked-up values, each
  chunk of template output).
- `**` is refused when the result would exceed `MAX_POWER_BITS` bits (`10**10**10`).

A row over budget is a dead letter whose reason names the template and the limit
(`templates.render_with_choices`); `flanmix templates lint` reports it. Limits are set per process
with `configure` (the build passes `--render_max_operations`, `--render_seconds`,
`--render_max_chars` through the plan; tests use small ones).

    >>> env = BoundedSandbox()
    >>> bounded()(env.from_string("{{ 'a' * 10**9 }}").render)()
    Traceback (most recent call last):
    pipelines.definitions.render_budget.BudgetExceeded: output size budget: 'a' * 1000000000 would make 1000000000 characters (limit 1000000)
"""
from __future__ import annotations

import functools
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OPERATIONS = 200_000  # a Flan template's render takes tens to a few thousand
RENDER_SECONDS = 5.0
MAX_CHARS = 1_000_000
MAX_POWER_BITS = 4096
MAX_RANGE = 100_000  # items of one range(); Jinja's own sandbox limit
_CHECK_CLOCK_EVERY = 256  # operations between wall-clock reads


@dataclass(frozen=True)
class RenderBudget:
    max_operations: int = MAX_OPERATIONS
    seconds: float = RENDER_SECONDS
    max_chars: int = MAX_CHARS

    def __post_init__(self):
        for name in ("max_operations", "seconds", "max_chars"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"render budget {name} must be a positive finite number (got {value!r})")


class BudgetExceeded(Exception):
    """A render went over its budget; the message names the limit."""


_configured = RenderBudget()
_state = threading.local()


def configure(budget: RenderBudget | None) -> None:
    """Set this process's budget (None: the defaults). Workers call it from the plan's budget."""
    global _configured
    _configured = budget or RenderBudget()


def current() -> RenderBudget:
    return _configured


def bounded(budget: RenderBudget | None = None):
    """Decorator: run each call of the function as one render under `budget` (default: the
    configured one). Nested calls share the outer budget. (A plain wrapper, not a context manager:
    it runs once per row, and a generator-based one cost microseconds.)"""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if getattr(_state, "budget", None) is not None:
                return func(*args, **kwargs)
            b = budget or _configured
            _state.budget, _state.ops, _state.deadline = b, 0, time.monotonic() + b.seconds
            try:
                return func(*args, **kwargs)
            finally:
                _state.budget = None

        return wrapper

    return decorate


def _budget() -> RenderBudget | None:
    return getattr(_state, "budget", None)


def step(n: int = 1) -> None:
    """Count `n` operations of the current render; raise BudgetExceeded past either time limit."""
    b = _budget()
    if b is None:
        return
    before = _state.ops
    _state.ops = before + n
    if _state.ops > b.max_operations:
        raise BudgetExceeded(f"time budget: more than {b.max_operations} template operations (render_max_operations)")
    if before // _CHECK_CLOCK_EVERY != _state.ops // _CHECK_CLOCK_EVERY and time.monotonic() > _state.deadline:
        raise BudgetExceeded(f"time budget: rendering took more than {b.seconds:g} s (render_seconds)")


def _limit() -> int:
    b = _budget()
    return (b or _configured).max_chars


def _size(value: Any) -> int:
    """The characters or items `value` holds, one level deep (a list of strings: items + their lengths)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return len(value) + sum(len(v) for v in value if isinstance(v, (str, bytes)))
    if isinstance(value, (dict, set, frozenset)):
        return len(value)
    return 0


def check_size(value: Any, what: str) -> Any:
    limit = _limit()
    if _size(value) > limit:
        raise BudgetExceeded(f"output size budget: {what} holds {_size(value)} characters or items (limit {limit})")
    return value


def _refuse_if_over(predicted: int, what: str) -> None:
    limit = _limit()
    if predicted > limit:
        raise BudgetExceeded(f"output size budget: {what} would make {predicted} characters (limit {limit})")


_INT = (int,)
_FORMAT_NUMBER = re.compile(r"\d+")


def _format_widths(spec: str, args: tuple, kwargs: dict) -> None:
    """Refuse `%`/format strings whose widths or precisions (literal, or `*` / `{}` taken from an
    argument) exceed the size limit."""
    widest = max((int(n) for n in _FORMAT_NUMBER.findall(spec) if len(n) < 20), default=0)
    if len(max(_FORMAT_NUMBER.findall(spec), key=len, default="")) >= 20:
        widest = 10**20
    if "*" in spec or "{" in spec:
        values = list(args) + list(kwargs.values())
        flat = [v for a in values for v in (a if isinstance(a, (tuple, list)) else (a,))]
        widest = max([widest] + [abs(v) for v in flat if isinstance(v, int) and not isinstance(v, bool)])
    _refuse_if_over(widest, f"a format width of {widest}")


def _precheck(name: str, obj: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a string operation whose result size is known to be over the limit before running it."""
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            _refuse_if_over(width, f"{name}({width})")
    elif name == "indent" and isinstance(obj, str):
        width = args[0] if args else kwargs.get("width", 4)
        width = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _refuse_if_over(len(obj) + (obj.count("\n") + 1) * width, f"indent({width})")
    elif name == "expandtabs" and isinstance(obj, str):
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _refuse_if_over(len(obj) + obj.count("\t") * size, f"expandtabs({size})")
    elif name == "replace" and isinstance(obj, str) and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            hits = len(obj) + 1 if old == "" else obj.count(old)
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            _refuse_if_over(len(obj) + hits * (len(new) - len(old)), "replace()")
    elif name == "format" and isinstance(obj, str):
        _format_widths(obj, args, kwargs)
    elif name == "join":
        items = args[0] if args else kwargs.get("iterable")
        if isinstance(items, (list, tuple)):
            sep = obj if isinstance(obj, str) else (args[1] if len(args) > 1 and isinstance(args[1], str) else "")
            _refuse_if_over(sum(len(v) for v in items if isinstance(v, str)) + len(sep) * len(items), "join()")
    elif name in ("lipsum", "generate_lorem_ipsum"):
        n = args[0] if args else kwargs.get("n", 5)
        if isinstance(n, int):
            _refuse_if_over(n * 1000, f"lipsum({n})")
    elif name == "wordwrap" and isinstance(obj, str):
        _refuse_if_over(len(obj) * 2, "wordwrap()")


class _BoundedRange:
    """range() for templates: at most MAX_RANGE items, and each iteration is a counted step."""

    __slots__ = ("_r",)

    def __init__(self, *args):
        r = range(*args)
        if len(r) > MAX_RANGE:
            raise BudgetExceeded(f"time budget: range() of {len(r)} items (limit {MAX_RANGE})")
        self._r = r

    def __len__(self) -> int:
        return len(self._r)

    def __getitem__(self, index):
        return self._r[index]

    def __contains__(self, item) -> bool:
        return item in self._r

    def __iter__(self):
        for i in self._r:
            step()
            yield i

    def __repr__(self) -> str:
        return repr(self._r)


def _bounded_filter(name: str, func: Callable) -> Callable:
    """Wrap a Jinja filter: a counted step, the size precheck, the size of its result checked."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        step()
        # A filter's value is its first argument after any context/env argument Jinja injects.
        values = [a for a in args if not isinstance(a, (jinja2.Environment, jinja2.runtime.Context,
                                                        jinja2.nodes.EvalContext))]
        if values:
            _precheck(name, values[0], tuple(values[1:]), kwargs)
        return check_size(func(*args, **kwargs), f"filter {name}")

    return wrapper


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every counted step and size check of this module."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.globals["range"] = _BoundedRange
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def add_filters(self, filters) -> None:
        """Register more filters, wrapped like Jinja's own."""
        self.filters.update({name: _bounded_filter(name, f) for name, f in filters.items()})

    def wrap_str_format(self, value):
        """Jinja's sandboxed `str.format` / `format_map`, with the widths checked first."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        spec, is_map = value.__self__, value.__name__ == "format_map"

        def checked(*args, **kwargs):
            if is_map:
                _format_widths(spec, (), args[0] if args and isinstance(args[0], dict) else {})
            else:
                _format_widths(spec, args, kwargs)
            return check_size(wrapped(*args, **kwargs), "format()")

        return checked

    def call_binop(self, context, operator, left, right):
        step()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(n, int) and not isinstance(n, bool) and isinstance(seq, (str, bytes, list, tuple)):
                    _refuse_if_over(_size(seq) * max(n, 0), f"{type(seq).__name__} of {len(seq)} * {n}"
                                    if not isinstance(seq, str) or len(seq) > 20 else f"{seq!r} * {n}")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                bits = right * math.log2(abs(left))
                if bits > MAX_POWER_BITS:
                    raise BudgetExceeded(f"output size budget: {left} ** {right} has about {int(bits)} bits "
                                         f"(limit {MAX_POWER_BITS})")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _refuse_if_over(_size(left) + _size(right), "+")
        elif operator == "%" and isinstance(left, str):
            _format_widths(left, right if isinstance(right, tuple) else (right,), right if isinstance(right, dict) else {})
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's signature
        step()
        _precheck(getattr(__obj, "__name__", ""), getattr(__obj, "__self__", None), args, kwargs)
        return check_size(super().call(__context, __obj, *args, **kwargs), f"{getattr(__obj, '__name__', 'call')}()")

    def getattr(self, obj, attribute):
        step()
        return check_size(super().getattr(obj, attribute), f"attribute {attribute!r}")

    def getitem(self, obj, argument):
        step()
        return check_size(super().getitem(obj, argument), "an item")


def render_template(template: jinja2.Template, context: dict) -> str:
    """`template.render(context)`, chunk by chunk: the output so far is held to the size limit (a
    loop emitting small pieces cannot grow past it) and chunks count as steps, 256 at a time."""
    limit, total, pending, parts = _limit(), 0, 0, []
    ctx = template.new_context(context)
    try:
        for chunk in template.root_render_func(ctx):
            total += len(chunk)
            if total > limit:
                raise BudgetExceeded(f"output size budget: more than {limit} characters of output (render_max_chars)")
            parts.append(chunk)
            pending += 1
            if pending == 256:
                step(pending)
                pending = 0
        if pending:
            step(pending)
    except Exception:  # noqa: BLE001 - Jinja's own handling (rewrites the traceback, re-raises)
        template.environment.handle_exception()
    return "".join(parts)


def add_flags(parser) -> None:
    """The budget's command-line flags (build, templates lint, templates preview)."""
    parser.add_argument("--render_max_operations", type=int, default=MAX_OPERATIONS, metavar="N",
                        help=f"time budget of one row's render, in counted template steps (default {MAX_OPERATIONS}); "
                             "a row over it is a dead letter")
    parser.add_argument("--render_seconds", type=float, default=RENDER_SECONDS, metavar="S",
                        help=f"wall-clock backstop for one row's render (default {RENDER_SECONDS:g})")
    parser.add_argument("--render_max_chars", type=int, default=MAX_CHARS, metavar="N",
                        help=f"largest string or sequence one render may make (default {MAX_CHARS})")


def from_flags(args) -> RenderBudget:
    """The budget the flags ask for; ValueError (a one-line message) if one is not positive."""
    return RenderBudget(args.render_max_operations, args.render_seconds, args.render_max_chars)
