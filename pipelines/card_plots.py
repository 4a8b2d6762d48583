"""The data card's plots: what each one shows is a plain function of the manifest, drawing is separate.

    plot_data(manifest) -> [PlotData, ...]      the bars / bins of every plot (tests check these)
    render_png(PlotData) -> bytes               a matplotlib (Agg) PNG of FIGSIZE at DPI

Every plot has a fixed layout so two corpora's cards compare at a glance: the same figure size,
the same bins (`card_stats`: half-octave token bins, 5 % fill bins), the same axes ranges where the
data allows (lengths always span 1 .. 131072 tokens, shares and efficiencies 0 .. 100 %).

    collection_shares.png     target vs realized share of the examples, per collection
    examples_per_task.png     examples per task, every task, largest first, log scale
    input_lengths.png         tokens per example (inputs) against the packing length
    target_lengths.png        tokens per example (targets) against the packing length
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
PLOT_NAMES = ("collection_shares", "examples_per_task", "input_lengths", "target_lengths",
              "packing_per_shard", "tokens_per_row", "exemplars_per_prompt")
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


def _length_marks(manifest: dict, side: str) -> tuple[tuple[str, float], ...]:
    lengths = manifest.get("sequence_length") or {}
    if manifest.get("layout") == "decoder":
        return (("row length (inputs + targets)", float(lengths["targets"])),)
    return ((f"{side} packing length", float(lengths[side])),)


def example_lengths(manifest: dict, side: str) -> PlotData | None:
    dist = (manifest.get("distributions") or {}).get("example_tokens")
    if not dist:
        return None
    edges = list(dist["bin_edges"])
    counts = dist[side]
    drawn = [float(LENGTH_AXIS[0])] + [float(e) for e in edges[1:]] + [float(LENGTH_AXIS[1])]
    labels = tuple(f"[{edges[i]}, {edges[i + 1]})" for i in range(len(edges) - 1)) + (f">= {edges[-1]}",)
    return PlotData(
        f"{'input' if side == 'inputs' else 'target'}_lengths",
        f"{side.capitalize()} length per example, as packed (EOS included)", f"{side} tokens per example (log scale)",
        "examples", labels, ((side, tuple(float(c) for c in counts)),), edges=tuple(drawn),
        marks=_length_marks(manifest, side))


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
        tuple((side, tuple(float(v) for v in fill[side])) for side in sides))


def exemplars_per_prompt(manifest: dict) -> PlotData | None:
    few = ((manifest.get("mixing") or {}).get("few_shot")) or {}
    dist = {int(k): v for k, v in (few.get("exemplars_per_prompt") or {}).items()}
    if not dist:
        return None
    top = max(MAX_SHOTS_AXIS, max(dist))
    return PlotData(
        "exemplars_per_prompt", "Few-shot exemplars per prompt (after fitting the inputs length)",
        "exemplars kept in the prompt", "few-shot prompts", tuple(str(k) for k in range(top + 1)),
        (("prompts", tuple(float(dist.get(k, 0)) for k in range(top + 1))),))


def plot_data(manifest: dict) -> list[PlotData]:
    """Every plot the corpus has data for, in PLOT_NAMES order."""
    plots = [collection_shares(manifest), examples_per_task(manifest), example_lengths(manifest, "inputs"),
             example_lengths(manifest, "targets"), packing_per_shard(manifest), tokens_per_row(manifest),
             exemplars_per_prompt(manifest)]
    return [p for p in plots if p is not None]


# --- drawing ---------------------------------------------------------------------------------------

def _plain(value: float) -> str:
    """Tick text without mathtext (which costs a layout pass per label): 1, 10, 1k, 10k, 1M."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


COLORS = ("#4C72B0", "#DD8452", "#55A868")


def render_png(plot: PlotData) -> bytes:
    """The PNG of one plot (FIGSIZE at DPI, no timestamp or version metadata: same data, same bytes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.14, 0.88, 0.76))
    n = len(plot.labels)
    if plot.edges is not None:  # histogram on a log x axis
        import numpy as np

        edges = np.asarray(plot.edges)
        for i, (label, values) in enumerate(plot.series):
            ax.stairs(values, edges, fill=True, alpha=0.8, color=COLORS[i % len(COLORS)], label=label)
        ax.set_xscale("log")
        ax.set_xlim(*LENGTH_AXIS)
        ticks = [1, 8, 32, 128, 512, 2048, 8192, 32768, 131072]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([_plain(t) for t in ticks])
        for j, (label, x) in enumerate(plot.marks):
            ax.axvline(x, color="#C44E52", linestyle="--", linewidth=1.5, label=f"{label} ({x:g})")
    else:
        width = 0.8 / len(plot.series)
        for i, (label, values) in enumerate(plot.series):
            color = COLORS[i % len(COLORS)]
            if n > MANY:
                ax.stairs(values, [j - 0.5 for j in range(n + 1)], fill=len(plot.series) == 1, color=color,
                          label=label, baseline=0.5 if plot.log_y else 0)
            else:
                ax.bar([j + (i - (len(plot.series) - 1) / 2) * width for j in range(n)], values, width=width,
                       color=color, label=label)
        ax.set_xlim(-0.6, n - 0.4)
        if n <= 24:
            ax.set_xticks(range(n))
            ax.set_xticklabels(plot.labels, rotation=30 if max(map(len, plot.labels), default=0) > 6 else 0,
                               ha="right" if max(map(len, plot.labels), default=0) > 6 else "center", fontsize=8)
        else:
            step = max(1, n // 10)
            ticks = list(range(0, n, step))
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t + 1) for t in ticks] if plot.name == "examples_per_task" else
                               [plot.labels[t] for t in ticks], fontsize=8)
    if plot.log_y:
        ax.set_yscale("log")
        top = max((v for _, values in plot.series for v in values), default=1.0)
        ticks = [10 ** k for k in range(0, len(str(int(max(top, 1)))) + 1)]
        ax.set_ylim(0.5, ticks[-1])
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticklabels([_plain(t) for t in ticks])
    elif plot.y_max is not None:
        ax.set_ylim(0, plot.y_max)
    ax.set_title(plot.title)
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    if len(plot.series) > 1 or plot.marks:
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ValueError when `data` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
