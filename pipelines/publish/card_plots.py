"""The data card's plots: what each one shows is a plain function of the manifest, drawing is separate.

    plot_data(manifest) -> [PlotData, ...]      the bars / bins of every plot (tests check these)
    render_png(PlotData) -> bytes               a PNG of PIXELS, drawn with Pillow

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

import functools
import io
import math
from dataclasses import dataclass

PIXELS = (800, 450)  # width, height
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
# Drawn with Pillow (already a dependency of Beam) rather than a plotting library: every plot here is
# axis-aligned rectangles, steps, a few lines and text, which Pillow rasterises in a few milliseconds.
# Importing matplotlib and laying out six figures had cost ~0.5 s of the job's wall time and ~2 s of
# CPU on every build (see the README's data card section). The layout is fixed in pixels, so the
# bytes depend only on the plot data (and on the Pillow / FreeType / zlib versions, as any rasteriser's do).

WIDTH, HEIGHT = PIXELS
BOX = (72, 45, 776, 378)  # the axes: left, top, right, bottom (px)
COLORS = ((76, 114, 176), (221, 132, 82), (85, 168, 104))
FILL_ALPHA = 140  # overlapping histograms stay readable (~55 % opaque)
INK, GRID = (0, 0, 0), (225, 225, 225)
TITLE_SIZE, LABEL_SIZE, TICK_SIZE = 15, 12, 11


def _plain(value: float) -> str:
    """Tick text: 1, 10, 1k, 10k, 1M."""
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= div and value % div == 0:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def _max_value(plot: PlotData) -> float:
    return max((v for _, values in plot.series for v in values), default=0.0)


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


@functools.lru_cache(maxsize=None)
def _font(size: int):
    """Pillow's bundled TrueType face at `size` px (FreeType ships in Pillow's wheels)."""
    from PIL import ImageFont, features

    if not features.check("freetype2"):
        raise RuntimeError("the data card's plots need Pillow built with FreeType (the PyPI wheels are)")
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class _Axis:
    """Maps data values on one axis to pixels, linearly or on a log scale, clamped to the axes box."""

    lo: float
    hi: float
    start: float  # pixel of lo
    end: float  # pixel of hi
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:
            value = max(value, self.lo)
            t = (math.log(value) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        else:
            t = (value - self.lo) / (self.hi - self.lo)
        return self.start + min(max(t, 0.0), 1.0) * (self.end - self.start)


def _x_axis(plot: PlotData) -> tuple[_Axis, list[float], list[str], bool]:
    """The x axis, its ticks and their labels, and whether the labels are long enough to slant."""
    left, _, right, _ = BOX
    n = len(plot.labels)
    if plot.edges is not None:
        if plot.log_x:
            ticks = [1, 8, 32, 128, 512, 2048, 8192, 32768, 131072]
            return _Axis(*LENGTH_AXIS, left, right, log=True), ticks, [f"{t:g}" for t in ticks], False
        ticks = list(plot.edges[::2])
        return _Axis(plot.edges[0], plot.edges[-1], left, right), ticks, [f"{t:g}" for t in ticks], False
    axis = _Axis(-0.6, n - 0.4, left, right)
    if n <= 12:
        return axis, list(range(n)), [label[:24] for label in plot.labels], max(map(len, plot.labels), default=0) > 8
    step = -(-n // 10)
    ticks = list(range(0, n, step))
    names = [str(t + 1) if plot.name == "examples_per_task" else plot.labels[t] for t in ticks]
    return axis, ticks, names, False


def _y_axis(plot: PlotData) -> tuple[_Axis, list[float]]:
    _, top, _, bottom = BOX
    peak = _max_value(plot)
    if plot.log_y:
        ticks = [10 ** k for k in range(0, len(str(int(max(peak, 1)))) + 1)]
        return _Axis(0.5, ticks[-1], bottom, top, log=True), ticks
    y_max = plot.y_max or (peak * 1.1 if peak > 0 else 1.0)
    step = _nice_step(y_max / 5)
    return _Axis(0.0, y_max, bottom, top), [step * i for i in range(int(y_max // step) + 1)]


def _rgba(color: tuple[int, int, int], alpha: int = 255) -> tuple[int, int, int, int]:
    return (*color, alpha)


def _text_rotated(image, xy: tuple[float, float], text: str, size: int, angle: float, corner: str) -> None:
    """`text` rotated by `angle` degrees (counter-clockwise), its rotated bounding box placed with
    `corner` ("center" or "top_right") at `xy`."""
    from PIL import Image, ImageDraw

    font = _font(size)
    x0, y0, x1, y1 = font.getbbox(text)
    mask = Image.new("L", (x1 + 2, y1 + 2), 0)
    ImageDraw.Draw(mask).text((1, 1), text, font=font, fill=255)
    mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    w, h = mask.size
    x, y = xy
    at = (round(x - w / 2), round(y - h / 2)) if corner == "center" else (round(x - w), round(y))
    image.paste(INK, (*at, at[0] + w, at[1] + h), mask)


def _dashed_vline(draw, x: float, top: float, bottom: float, color, dash: int = 6, gap: int = 4) -> None:
    y = top
    while y < bottom:
        draw.line([(x, y), (x, min(y + dash, bottom))], fill=color, width=2)
        y += dash + gap


def _legend(draw, plot: PlotData, upper_left: bool) -> None:
    entries = [("patch", _rgba(COLORS[i % len(COLORS)], FILL_ALPHA if plot.edges is not None else 255), label)
               for i, (label, _) in enumerate(plot.series)]
    entries += [("dash", _rgba(COLORS[j % len(COLORS)]), f"{label} {x:g}") for j, (label, x) in enumerate(plot.marks)]
    font = _font(TICK_SIZE)
    width = 30 + max(int(font.getlength(label)) for _, _, label in entries)
    left = BOX[0] + 12 if upper_left else BOX[2] - 12 - width
    y = BOX[1] + 10
    for kind, color, label in entries:
        if kind == "patch":
            draw.rectangle([left, y + 3, left + 20, y + 11], fill=color)
        else:
            for x in (left, left + 9, left + 18):
                draw.line([(x, y + 7), (min(x + 5, left + 20), y + 7)], fill=color, width=2)
        draw.text((left + 28, y + 7), label, font=font, fill=INK, anchor="lm")
        y += 17


def render_png(plot: PlotData) -> bytes:
    """The PNG of one plot: PIXELS, fixed axes box and text positions, no metadata (same data, same
    bytes). Histograms are translucent filled steps on their bin edges (log x for token counts),
    marks dashed vertical lines; categories are grouped bars, or one step outline past MANY of them."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", PIXELS, (255, 255, 255))
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA fills blend onto the white image
    left, top, right, bottom = BOX
    x_axis, x_ticks, x_names, slant = _x_axis(plot)
    y_axis, y_ticks = _y_axis(plot)
    tick_font = _font(TICK_SIZE)
    for t in y_ticks:  # grid first, under the data
        draw.line([(left, y_axis(t)), (right, y_axis(t))], fill=GRID, width=1)

    def box(x0: float, x1: float, value: float) -> list[float] | None:
        if value <= 0 or (plot.log_y and value < y_axis.lo):
            return None
        x0, x1 = round(x_axis(x0)), round(x_axis(x1)) - 1  # neighbouring bins share no pixel column
        return [x0, round(y_axis(value)), x1, bottom] if x1 >= x0 else None

    n = len(plot.labels)
    if plot.edges is not None:
        for i, (_, values) in enumerate(plot.series):
            color = _rgba(COLORS[i % len(COLORS)], FILL_ALPHA)
            for j, value in enumerate(values):
                rect = box(plot.edges[j], plot.edges[j + 1], value)
                if rect:
                    draw.rectangle(rect, fill=color)
        for j, (_, x) in enumerate(plot.marks):
            _dashed_vline(draw, x_axis(x), top, bottom, _rgba(COLORS[j % len(COLORS)]))
    else:
        k = len(plot.series)
        width = 0.8 / k
        for i, (_, values) in enumerate(plot.series):
            color = _rgba(COLORS[i % len(COLORS)])
            if n > MANY:  # one step per category: bars would be thinner than a pixel
                if k == 1:
                    for j, value in enumerate(values):
                        rect = box(j - 0.5, j + 0.5, value)
                        if rect:
                            draw.rectangle(rect, fill=color)
                else:
                    points = [(x_axis(j + d), y_axis(max(value, y_axis.lo))) for j, value in enumerate(values)
                              for d in (-0.5, 0.5)]
                    draw.line(points, fill=color, width=2)
            else:
                for j, value in enumerate(values):
                    centre = j + (i - (k - 1) / 2) * width
                    rect = box(centre - width / 2, centre + width / 2, value)
                    if rect:
                        draw.rectangle(rect, fill=color)
    draw.rectangle([left, top, right, bottom], outline=INK, width=1)
    for t, name in zip(x_ticks, x_names):
        x = x_axis(t)
        draw.line([(x, bottom), (x, bottom + 4)], fill=INK, width=1)
        if slant:
            _text_rotated(image, (x + 4, bottom + 6), name, TICK_SIZE, 20, "top_right")
        else:
            draw.text((x, bottom + 7), name, font=tick_font, fill=INK, anchor="mt")
    for t in y_ticks:
        y = y_axis(t)
        draw.line([(left - 4, y), (left, y)], fill=INK, width=1)
        draw.text((left - 7, y), _plain(t), font=tick_font, fill=INK, anchor="rm")
    draw.text((WIDTH / 2, 20), plot.title, font=_font(TITLE_SIZE), fill=INK, anchor="mm")
    draw.text((0.53 * WIDTH, HEIGHT - 12), plot.xlabel, font=_font(LABEL_SIZE), fill=INK, anchor="md")
    _text_rotated(image, (16, (top + bottom) / 2), plot.ylabel, LABEL_SIZE, 90, "center")
    if len(plot.series) > 1 or plot.marks:
        _legend(draw, plot, upper_left=plot.edges is not None and not plot.log_x)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def render_all(plots: list[PlotData]) -> list[bytes]:
    """The PNGs of `plots`, in order."""
    return [render_png(p) for p in plots]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ValueError when `data` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
