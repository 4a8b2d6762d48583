"""The data card's plots: what each one shows is a plain function of the manifest, drawing is separate.

    plot_data(manifest) -> [PlotData, ...]      the bars / bins of every plot (tests check these)
    render_png(PlotData) -> bytes               a matplotlib (Agg) PNG of FIGSIZE at DPI

Every plot has a fixed layout so two corpora's cards compare at a glance: the same figure size,
the same bins (`card_stats`: half-octave token bins, 5 % fill bins), the same axes ranges where the
data allows (lengths always span 1 .. 131072 tokens, shares and efficiencies 0 .. 100 %).

    collection_shares.png     target vs realized share of the examples, per collection
    examples_per_task.png     examples per task, every task, largest first, log scale
    example_lengths.png       tokens per example, inputs and targets, against the packing lengths
    packing_per_shard.png     non-pad share of the slots, per output shard
    tokens_per_row.png        rows by non-pad share of their slots
    exemplars_per_prompt.png  few-shot prompts by the number of exemplars they kept

A plot whose data the corpus does not have (a `--format jsonl` export has no token lengths, a
mixture without few-shot settings has no exemplars) is left out; `PLOT_NAMES` lists them all.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

FIGSIZE = (8.0, 4.5)  # inches
DPI = 100  # -> 800 x 450 pixels
PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
PLOT_NAMES = ("collection_shares", "examples_per_task", "example_lengths", "packing_per_shard", "tokens_per_row",
              "exemplars_per_prompt")
LENGTH_AXIS = (1, 131072)  # tokens; the first bin [0, 8) is drawn from 1, the open last one to 131072
MAX_SHOTS_AXIS = 5  # exemplars axis shows at least 0..5 (Flan's range)
MANY = 64  # more categories than this are drawn as one step outline instead of bars


@dataclass(frozen=True)
class PlotData:
    """One plot's content. `labels` name the bars (or bins); each series has one value per label.
    Histograms also carry their bin `edges` (len(labels) + 1) and draw on a log x axis; `marks` are
    vertical lines at x (the packing lengths)."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]
    edges: tuple[float, ...] | None = None
    log_y: bool = False
    marks: tuple[tuple[str, float], ...] = ()
    y_max: float | None = None  # fixed top of the y axis (percentages: 100)
    log_x: bool = True  # histograms: log x axis (token counts) or linear (percentages)

    @property
    def file(self) -> str:
        return f"card/{self.name}.png"


# --- data ------------------------------------------------------------------------------------------

def _pct(x: float) -> float:
    return round(100.0 * x, 4)


def collection_shares(manifest: dict) -> PlotData | None:
    cols = ((manifest.get("mixing") or {}).get("collections")) or {}
    if not cols:
        return None
    names = tuple(sorted(cols))
    return PlotData(
        "collection_shares", "Target vs realized share per collection", "collection", "share of examples (%)",
        names, (("target", tuple(_pct(cols[c]["target_share"]) for c in names)),
                ("realized", tuple(_pct(cols[c]["realized_share"]) for c in names))), y_max=100.0)


def tasks_by_size(manifest: dict) -> list[tuple[str, int]]:
    """(task, examples), largest first, ties by name: the order of the plot and of the card's table."""
    return sorted(((n, d["examples"]) for n, d in manifest["datasets"].items()), key=lambda t: (-t[1], t[0]))


def examples_per_task(manifest: dict) -> PlotData:
    tasks = tasks_by_size(manifest)
    return PlotData(
        "examples_per_task", f"Examples per task ({len(tasks)} tasks, largest first)", "task (rank)",
        "examples (log scale)", tuple(n for n, _ in tasks), (("examples", tuple(float(e) for _, e in tasks)),),
        log_y=True)


def _length_marks(manifest: dict) -> tuple[tuple[str, float], ...]:
    lengths = manifest.get("sequence_length") or {}
    if manifest.get("layout") == "decoder":
        return (("row length", float(lengths["targets"])),)
    return tuple((f"{side} length", float(lengths[side])) for side in ("inputs", "targets"))


def example_lengths(manifest: dict) -> PlotData | None:
    """Inputs and targets tokens per example (as packed, EOS included) in card_stats' fixed bins."""
    dist = (manifest.get("distributions") or {}).get("example_tokens")
    if not dist:
        return None
    edges = list(dist["bin_edges"])
    drawn = [float(LENGTH_AXIS[0])] + [float(e) for e in edges[1:]] + [float(LENGTH_AXIS[1])]
    labels = tuple(f"[{edges[i]}, {edges[i + 1]})" for i in range(len(edges) - 1)) + (f">= {edges[-1]}",)
    return PlotData(
        "example_lengths", "Tokens per example, as packed (EOS included), against the packing lengths",
        "tokens per example (log scale)", "examples", labels,
        tuple((side, tuple(float(c) for c in dist[side])) for side in ("inputs", "targets")),
        edges=tuple(drawn), marks=_length_marks(manifest))


def _sides(manifest: dict) -> tuple[str, ...]:
    return ("targets",) if manifest.get("layout") == "decoder" else ("inputs", "targets")


def packing_per_shard(manifest: dict) -> PlotData | None:
    shards = (manifest.get("distributions") or {}).get("shards")
    if not shards:
        return None
    sides = _sides(manifest)
    return PlotData(
        "packing_per_shard", "Packing efficiency per shard (non-pad tokens / slots)", "output shard",
        "packing efficiency (%)", tuple(str(s["shard"]) for s in shards),
        tuple((side, tuple(_pct(s["packing_efficiency"][side]) for s in shards)) for side in sides), y_max=100.0)


def tokens_per_row(manifest: dict) -> PlotData | None:
    fill = (manifest.get("distributions") or {}).get("row_fill")
    if not fill:
        return None
    edges = fill["bin_edges_percent"]
    lengths = fill["row_length"]
    sides = _sides(manifest)
    what = ", ".join(f"{s} {lengths[s]}" for s in sides)
    return PlotData(
        "tokens_per_row", "Tokens per row (non-pad share of the row)",
        f"non-pad tokens per row, % of row length ({what} tokens)", "rows",
        tuple(f"{edges[i]}-{edges[i + 1]}%" for i in range(len(edges) - 1)),
        tuple((side, tuple(float(v) for v in fill[side])) for side in sides), edges=tuple(float(e) for e in edges),
        log_x=False)


def exemplars_per_prompt(manifest: dict) -> PlotData | None:
    few = ((manifest.get("mixing") or {}).get("few_shot")) or {}
    dist = {int(k): v for k, v in (few.get("exemplars_per_prompt") or {}).items()}
    if not dist:
        return None
    top = max(MAX_SHOTS_AXIS, max(dist))
    return PlotData(
        "exemplars_per_prompt", "Few-shot exemplars per prompt (after fitting the inputs length)",
        "exemplars kept in the prompt", "few-shot prompts with pool exemplars", tuple(str(k) for k in range(top + 1)),
        (("prompts", tuple(float(dist.get(k, 0)) for k in range(top + 1))),))


def plot_data(manifest: dict) -> list[PlotData]:
    """Every plot the corpus has data for, in PLOT_NAMES order."""
    plots = [collection_shares(manifest), examples_per_task(manifest), example_lengths(manifest),
             packing_per_shard(manifest), tokens_per_row(manifest), exemplars_per_prompt(manifest)]
    return [p for p in plots if p is not None]


# --- drawing ---------------------------------------------------------------------------------------

def _plain(value: float) -> str:
    """Tick text without mathtext (which costs a layout pass per label): 1, 10, 1k, 10k, 1M."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= div and value % div == 0:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


COLORS = ("#4C72B0", "#DD8452", "#55A868")


def _ticks(ax, axis: str, positions, labels) -> None:
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(list(positions)))
    target.set_major_formatter(FixedFormatter(list(labels)))
    target.set_minor_locator(NullLocator())


def _max_value(plot: PlotData) -> float:
    return max((v for _, values in plot.series for v in values), default=0.0)


def render_png(plot: PlotData) -> bytes:
    """The PNG of one plot (FIGSIZE at DPI, no timestamp or version metadata: same data, same bytes).

    Drawn for speed as well as looks (the card is on every build's critical path): fixed axes box
    and text positions instead of layout passes, few fixed ticks, steps instead of many bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.16, 0.88, 0.74))
    n = len(plot.labels)
    if plot.edges is not None:  # histogram on a log x axis
        for i, (label, values) in enumerate(plot.series):
            ax.stairs(values, plot.edges, fill=True, alpha=0.55, color=COLORS[i % len(COLORS)], label=label)
        if plot.log_x:
            ax.set_xscale("log")
            ax.set_xlim(*LENGTH_AXIS)
            ticks = (1, 8, 32, 128, 512, 2048, 8192, 32768, 131072)
        else:
            ax.set_xlim(plot.edges[0], plot.edges[-1])
            ticks = plot.edges[::2]
        _ticks(ax, "x", ticks, [f"{t:g}" for t in ticks])
        for j, (label, x) in enumerate(plot.marks):
            ax.axvline(x, color=COLORS[j % len(COLORS)], linestyle="--", linewidth=1.5, label=f"{label} {x:g}")
    else:
        k = len(plot.series)
        width = 0.8 / k
        for i, (label, values) in enumerate(plot.series):
            color = COLORS[i % len(COLORS)]
            if n > MANY:
                ax.stairs(values, [j - 0.5 for j in range(n + 1)], fill=k == 1, color=color, label=label,
                          baseline=0.5 if plot.log_y else 0)
            else:
                ax.bar([j + (i - (k - 1) / 2) * width for j in range(n)], values, width=width, color=color, label=label)
        ax.set_xlim(-0.6, n - 0.4)
        if n <= 12:
            long = max(map(len, plot.labels), default=0) > 8
            _ticks(ax, "x", range(n), [lab[:24] for lab in plot.labels])
            if long:
                for t in ax.get_xticklabels():
                    t.set_rotation(20)
                    t.set_horizontalalignment("right")
        else:
            step = -(-n // 10)
            ticks = range(0, n, step)
            _ticks(ax, "x", ticks, [str(t + 1) if plot.name == "examples_per_task" else plot.labels[t] for t in ticks])
    top = _max_value(plot)
    if plot.log_y:
        ax.set_yscale("log")
        ticks = [10 ** k for k in range(0, len(str(int(max(top, 1)))) + 1)]
        ax.set_ylim(0.5, ticks[-1])
        _ticks(ax, "y", ticks, [_plain(t) for t in ticks])
    else:
        y_max = plot.y_max or (top * 1.1 if top > 0 else 1.0)
        ax.set_ylim(0, y_max)
        step = _nice_step(y_max / 5)
        ticks = [step * i for i in range(int(y_max // step) + 1)]
        _ticks(ax, "y", ticks, [_plain(t) for t in ticks])
    tick_size = 8
    ax.tick_params(labelsize=tick_size)
    fig.text(0.5, 0.955, plot.title, ha="center", va="center", fontsize=11)
    fig.text(0.53, 0.025, plot.xlabel, ha="center", va="bottom", fontsize=9)
    fig.text(0.015, 0.53, plot.ylabel, ha="left", va="center", rotation=90, fontsize=9)
    if len(plot.series) > 1 or plot.marks:
        ax.legend(loc="upper left" if plot.edges is not None and not plot.log_x else "upper right", fontsize=8,
                  frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    import math

    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


# --- drawing off the critical path --------------------------------------------------------------
# Importing matplotlib and drawing a first figure cost ~0.5 s, and each plot ~50 ms of layout and
# rasterising, all of it holding the GIL. `flanmix build` on the local runner (in-process worker)
# starts PLOT_PROCESSES spawned helper processes when it starts (`start_warming`): each imports
# matplotlib and draws a throwaway figure while the job runs (on another core, so the job's thread
# keeps the GIL), and at the end the six plots are drawn in the helpers in parallel, about a third of
# drawing them one after another in the job's process. The bytes do not depend on it: the same
# function draws each plot the same way wherever it runs; without helpers (`flanmix card`, tests,
# Beam worker processes, Dataflow) the plots are drawn in-process, one after another.

PLOT_PROCESSES = 2
_HELPERS: list | None = None


def _warm_up() -> None:
    """Draw one throwaway plot down each path `render_png` takes (bars with rotated labels, many bars as
    log-y steps, a log-x histogram with marks and a legend, a linear one), so the card's real plots
    find fonts, tick machinery and scales already loaded: a first draw of a kind costs several times
    a later one."""
    labels = tuple(f"label {i}" for i in range(3))
    render_png(PlotData("warm", "warm", "x", "y", labels, (("a", (1.0, 2.0, 3.0)), ("b", (2.0, 1.0, 0.5)))))
    render_png(PlotData("warm", "warm", "x", "y", tuple(map(str, range(40))), (("s", tuple(range(1, 41))),), log_y=True))
    edges = tuple(float(2 ** k) for k in range(12))
    render_png(PlotData("warm", "warm", "x", "y", tuple(map(str, range(11))), (("a", (1.0,) * 11), ("b", (2.0,) * 11)),
                        edges=edges, marks=(("m", 512.0),)))
    render_png(PlotData("warm", "warm", "x", "y", tuple(map(str, range(10))), (("s", (1.0,) * 10),),
                        edges=tuple(float(10 * k) for k in range(11)), log_x=False, y_max=100.0))


def _serve() -> None:
    """A helper process (`start_warming`): warm up, then read one pickled list of PlotData from stdin
    and write the pickled list of their PNGs to stdout."""
    import os
    import pickle
    import sys

    _warm_up()
    data = sys.stdin.buffer.read()
    if data:
        sys.stdout.buffer.write(pickle.dumps([render_png(p) for p in pickle.loads(data)]))
        sys.stdout.buffer.flush()
    os._exit(0)  # the parent reads to EOF: skip the interpreter's teardown (matplotlib's is ~0.1 s)


def start_warming():
    """Start the helper processes (once, until `render_all` uses them): plain interpreters running
    `_serve` (not multiprocessing, whose spawned children re-import the caller's __main__). Returns
    the helpers, or None where processes cannot be started (the plots are then drawn in-process)."""
    global _HELPERS
    if _HELPERS is None:
        import os
        import subprocess
        import sys

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            _HELPERS = [subprocess.Popen([sys.executable, "-c", "from pipelines.publish.card_plots import _serve; _serve()"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
                        for _ in range(PLOT_PROCESSES)]
        except OSError:  # no processes here (e.g. a sandbox): draw in-process
            _HELPERS = None
    return _HELPERS


def _draw_in_helpers(helpers: list, plots: list[PlotData]) -> list[bytes]:
    import pickle

    shares = [plots[i::len(helpers)] for i in range(len(helpers))]  # round robin: similar work each
    for helper, share in zip(helpers, shares):
        helper.stdin.write(pickle.dumps(share))
        helper.stdin.close()
    drawn = []
    for helper in helpers:
        out = helper.stdout.read()
        if helper.wait() != 0 or not out:
            raise RuntimeError("a plot helper process failed")
        drawn.append(pickle.loads(out))
    result: list[bytes] = [b""] * len(plots)
    for i, pngs in enumerate(drawn):
        result[i::len(helpers)] = pngs
    return result


def render_all(plots: list[PlotData]) -> list[bytes]:
    """The PNGs of `plots`, in order: in the helper processes when `start_warming` started them
    (which then exit), else here, one after another."""
    global _HELPERS
    helpers, _HELPERS = _HELPERS, None
    if helpers:
        try:
            return _draw_in_helpers(helpers, plots)
        except Exception:  # noqa: BLE001 - a helper died or could not import: draw here instead
            for helper in helpers:
                helper.kill()
                helper.wait()
    return [render_png(p) for p in plots]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ValueError when `data` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
