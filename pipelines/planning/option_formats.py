"""Answer-option formats: how `{{ options_block }}` lays out a template's answer choices.

Flan 2022 showed the choices of one task in many layouts, drawn per example, so a model learns the
task and not one layout (flan_mechanics.md §6: a lead-in word or none, bullets or enumerations,
one per line or inline, an optional end mark; with an enumeration the target may be the marker).
flanmix has its own documented set, `FORMATS` (24 formats, listed in the README's "Mixtures"
section). A format is

- `prefix`: the lead-in before the choices ("" for none), e.g. "Options:";
- `marker`: how an item starts: a bullet ("- ", "* ", "+ ") or an enumeration pattern where `{}` is
  the item's label ("({}) ", "{}. ", "[{}] ", "{}) "), with `labels` naming the label sequence:
  lower/upper letters, numbers, lower/upper roman numerals ("" for a bullet);
- `inline`: False puts every item on its own line after the prefix; True keeps them on one line
  after the prefix, separated by a space;
- `end`: appended to every item ("", ";" or ".").

Choosing one is a sampling decision made with a keyed hash of (seed, dataset, copy key)
(`pick_format`, `marker_answer`), so a build is identical on any runner; `render_block` and
`answer` are pure and take the format as an argument (templates.render gets it passed in).

    >>> fmt = by_name("choices_upper_dot_lines")
    >>> render_block(["yes", "no"], fmt)
    'Choices:\\nA. yes\\nB. no'
    >>> answer(fmt, 1)
    'B.'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from pipelines.planning.hashing import keyed_choice, keyed_hash

_TWO_64 = float(2**64)
DEFAULT_MARKER_ANSWERS = 0.5  # share of enumerated-format examples whose target is the marker (mixture key)
MAX_ENUMERATED = 26


def _roman(n: int) -> str:
    out = []
    for value, digits in ((10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        while n >= value:
            out.append(digits)
            n -= value
    return "".join(out)


LABELS = {
    "": lambda i: "",
    "a": lambda i: chr(ord("a") + i),
    "A": lambda i: chr(ord("A") + i),
    "1": lambda i: str(i + 1),
    "i": lambda i: _roman(i + 1),
    "I": lambda i: _roman(i + 1).upper(),
}


@dataclass(frozen=True)
class OptionFormat:
    name: str
    prefix: str
    marker: str  # a bullet, or a pattern with "{}" for the label
    labels: str = ""  # key of LABELS; "" for a bullet
    inline: bool = False
    end: str = ""

    @property
    def enumerated(self) -> bool:
        """True when each item has its own label, so the label can stand for the answer."""
        return bool(self.labels)

    def label(self, i: int) -> str:
        return self.marker.format(LABELS[self.labels](i)) if self.labels else self.marker


# The documented set (README, "Mixtures"). Names say prefix, marker and layout; order is fixed:
# the keyed choice indexes into it, so appending a format changes which format each example gets.
FORMATS: tuple[OptionFormat, ...] = (
    OptionFormat("options_hyphen_lines", "Options:", "- "),  # templates.options_block's default layout
    OptionFormat("none_hyphen_lines", "", "- "),
    OptionFormat("choices_asterisk_lines", "Choices:", "* "),
    OptionFormat("answers_plus_lines", "Possible answers:", "+ "),
    OptionFormat("pick_hyphen_inline", "Pick one:", "- ", inline=True),
    OptionFormat("select_hyphen_lines_semicolon", "Select from:", "- ", end=";"),
    OptionFormat("options_paren_lower_lines", "Options:", "({}) ", "a"),
    OptionFormat("choices_upper_dot_lines", "Choices:", "{}. ", "A"),
    OptionFormat("none_paren_upper_lines", "", "({}) ", "A"),
    OptionFormat("answer_choices_number_paren_lines", "Answer choices:", "{}) ", "1"),
    OptionFormat("options_bracket_number_lines", "Options:", "[{}] ", "1"),
    OptionFormat("choose_roman_dot_lines", "Choose one of:", "{}. ", "i"),
    OptionFormat("options_roman_upper_paren_lines", "OPTIONS:", "({}) ", "I"),
    OptionFormat("options_paren_lower_inline", "Options:", "({}) ", "a", inline=True),
    OptionFormat("none_paren_upper_inline", "", "({}) ", "A", inline=True),
    OptionFormat("choices_number_dot_inline", "Choices:", "{}. ", "1", inline=True),
    OptionFormat("candidates_lower_paren_lines_period", "Candidates:", "{}) ", "a", end="."),
    OptionFormat("answers_bracket_upper_lines", "Possible answers:", "[{}] ", "A"),
    OptionFormat("select_number_paren_inline_semicolon", "Select from:", "({}) ", "1", inline=True, end=";"),
    OptionFormat("none_lower_dot_lines", "", "{}. ", "a"),
    OptionFormat("pick_roman_paren_lines", "Pick the answer from:", "{}) ", "i"),
    OptionFormat("which_upper_paren_lines", "Which is it?", "{}) ", "A"),
    OptionFormat("options_asterisk_inline_period", "Options:", "* ", inline=True, end="."),
    OptionFormat("none_number_dot_lines", "", "{}. ", "1"),
)
FORMAT_NAMES = tuple(f.name for f in FORMATS)
assert len(set(FORMAT_NAMES)) == len(FORMATS)


def by_name(name: str) -> OptionFormat:
    for f in FORMATS:
        if f.name == name:
            return f
    raise KeyError(f"unknown option format {name!r} (known: {', '.join(FORMAT_NAMES)})")


def render_block(choices: Sequence[str], fmt: OptionFormat) -> str:
    """The choices as one block in `fmt`. An enumerated format with more choices than letters
    (26) falls back to its bullet-free numbering so every label stays distinct."""
    if fmt.enumerated and fmt.labels in ("a", "A") and len(choices) > MAX_ENUMERATED:
        fmt = OptionFormat(fmt.name, fmt.prefix, fmt.marker, "1", fmt.inline, fmt.end)
    items = [fmt.label(i) + c + fmt.end for i, c in enumerate(choices)]
    if fmt.inline:
        return " ".join([fmt.prefix, *items]) if fmt.prefix else " ".join(items)
    return "\n".join([fmt.prefix, *items]) if fmt.prefix else "\n".join(items)


def answer(fmt: OptionFormat, index: int, n_choices: int = 0) -> str:
    """The marker that stands for choice `index` in a marker answer: its label without the
    trailing space, e.g. "(b)", "B.", "iii." (numbers past 26 letters, as `render_block`)."""
    labels = "1" if fmt.labels in ("a", "A") and n_choices > MAX_ENUMERATED else fmt.labels
    return fmt.marker.format(LABELS[labels](index)).strip()


def pick_format(seed: int, task: str, key: str) -> OptionFormat:
    """The format of one copy's options block: a keyed choice, uniform over `FORMATS`."""
    return FORMATS[keyed_choice(len(FORMATS), seed, "option_format", task, key)]


def marker_answer(seed: int, task: str, key: str, fmt: OptionFormat, share: float) -> bool:
    """Whether this copy's target becomes the marker of the right choice: only for enumerated
    formats, with probability `share` (the mixture's `option_marker_answers`)."""
    if not fmt.enumerated or share <= 0:
        return False
    return keyed_hash(seed, "option_marker", task, key) / _TWO_64 < share


def format_counts(counts: Mapping) -> dict:
    """The manifest's `option_formats`: options blocks rendered per format, and marker answers."""
    from pipelines import counters

    used = counters.by_part(counts, counters.OPTION_FORMAT)
    return {
        "formats_available": len(FORMATS),
        "used": dict(sorted(used.items())),
        "distinct_used": len(used),
        "blocks": sum(used.values()),
        "marker_answers": counters.total(counts, counters.OPTION_MARKER_ANSWER),
    }
