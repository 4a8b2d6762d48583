"""The packed layouts, declared once: each layout's int32 features in row order and the manifest
`sequence_length` entry that sizes each one. The same declarations live in
schemas/packed_{encdec,decoder}.features.json, with a worked example; a test checks that this table
equals them (a feature of shape ["inputs_length"] is sized by sequence_length["inputs"]).

    >>> feature_lengths("decoder", {"targets": 2560})
    {'targets': 2560, 'targets_segment_ids': 2560, 'targets_positions': 2560, 'loss_mask': 2560}

A row also holds `provenance` (one string per segment) after the int features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

LAYOUT_ENCDEC = "encdec"
LAYOUT_DECODER = "decoder"
LAYOUT_TEXT = "text"  # a --format jsonl export: rendered text, not packed rows


@dataclass(frozen=True)
class Layout:
    """A packed layout: its features and the manifest sequence_length key that sizes each one."""

    name: str
    features: tuple[tuple[str, str], ...]  # (feature, sequence_length key)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.features)


LAYOUTS: dict[str, Layout] = {
    LAYOUT_ENCDEC: Layout(LAYOUT_ENCDEC, (
        ("inputs", "inputs"), ("inputs_segment_ids", "inputs"), ("inputs_positions", "inputs"),
        ("targets", "targets"), ("targets_segment_ids", "targets"), ("targets_positions", "targets"),
    )),
    LAYOUT_DECODER: Layout(LAYOUT_DECODER, (
        ("targets", "targets"), ("targets_segment_ids", "targets"), ("targets_positions", "targets"),
        ("loss_mask", "targets"),
    )),
}
PACKED_LAYOUTS = tuple(LAYOUTS)


def layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; use one of {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def length_key(feature: str) -> str:
    """The `sequence_length` entry that sizes a feature (the same in every layout)."""
    for spec in LAYOUTS.values():
        for name, key in spec.features:
            if name == feature:
                return key
    raise ValueError(f"{feature!r} is no packed int feature")


def feature_lengths(name: str, sequence_length: Mapping[str, int]) -> dict[str, int]:
    """{feature: length} of a layout's int features for a manifest's `sequence_length`."""
    return {feature: int(sequence_length[key]) for feature, key in layout(name).features}
