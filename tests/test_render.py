"""Issue 17, item 10: colour bars with round ticks and a unit; signed maps on a diverging scale centred on 0."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.explain import METHODS, VALUE_UNITS, value_unit
from zoo.render import SIGNED_CMAP, Scale, _lut, colorize, map_style, nice_ticks, raw_figure, tick_labels


@pytest.mark.parametrize("lo, hi, expected", [
    (164.0, 1010.0, [250, 500, 750, 1000]),  # was 164, 375, 587, 798, 1.01e+03
    (0.0, 1.0, [0, 0.25, 0.5, 0.75, 1]),
    (-2.7, 2.7, [-2, 0, 2]),
    (-0.0031, 0.0031, [-0.002, 0, 0.002]),
    (0.1, 0.3, [0.1, 0.15, 0.2, 0.25, 0.3]),
])
def test_ticks_are_round_values_inside_the_range(lo, hi, expected):
    ticks = nice_ticks(lo, hi)
    assert ticks == pytest.approx(expected)
    assert all(lo <= t <= hi for t in ticks) and 2 <= len(ticks) <= 5


def test_tick_labels_share_their_decimals_and_have_no_float_noise():
    assert tick_labels(nice_ticks(0.0, 1.0)) == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert tick_labels(nice_ticks(164.0, 1010.0)) == ["250", "500", "750", "1000"]
    assert tick_labels(nice_ticks(-0.0031, 0.0031)) == ["-0.002", "0.000", "0.002"]
    assert tick_labels(nice_ticks(5.0, 5.0)) == ["5"]  # a constant map: one tick, no error


def test_signed_methods_draw_on_a_diverging_scale_centred_on_zero():
    raw = np.array([[-1.0, 0.0], [0.5, 3.0]], np.float32)
    cmap, scale = map_style(raw, "jet", None, signed=True)
    assert cmap == SIGNED_CMAP and scale == Scale(-3.0, 3.0)
    # A given (e.g. shared) scale is made symmetric too; a diverging pick is kept; unsigned maps are untouched.
    assert map_style(raw, "coolwarm", Scale(-1.0, 2.0), True) == ("coolwarm", Scale(-2.0, 2.0))
    assert map_style(raw, "jet", None, False) == ("jet", None)
    # 0 gets the colormap's middle colour: neutral, neither for nor against.
    rgb, _ = colorize(raw, cmap, scale)
    assert tuple(rgb[0, 1]) == tuple(_lut(SIGNED_CMAP)[128])
    # The methods whose sign means something are the ones drawn so.
    assert {m.name for m in METHODS.values() if m.signed} == {"integrated-gradients", "occlusion",
                                                               "lrp-epsilon-plus-flat", "lrp-epsilon-gamma-box"}


def test_raw_figure_of_a_signed_map_uses_the_diverging_colours():
    raw = np.array([[-2.0, 1.0], [0.0, 2.0]], np.float32)
    fig = raw_figure(raw, "jet", None, "t", cell=10, signed=True, unit="attribution (logit units)")
    lut = _lut(SIGNED_CMAP)
    top, left = 30, 10  # where the grid starts (see raw_figure)
    assert tuple(fig[top + 5, left + 5]) == tuple(lut[0])  # -2, the lower end: blue
    assert tuple(fig[top + 15, left + 15]) == tuple(lut[255])  # +2, the upper end: red


def test_the_colour_bar_carries_the_unit():
    raw = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    plain = raw_figure(raw, "jet", None, "t")
    labelled = raw_figure(raw, "jet", None, "t", unit=value_unit("cam"))
    assert labelled.shape[1] > plain.shape[1]  # a column for the unit, written along the bar
    right = labelled[:, -24:]
    assert (right < 128).any(), "the unit's text is drawn at the right edge"
    # Every method says what its values are; CAM's are logits' shares, exactly.
    assert set(VALUE_UNITS) == set(METHODS)
    assert value_unit("cam") == "class evidence (logit units)"
    assert all(text.isascii() for text in VALUE_UNITS.values())  # Pillow's built-in font has no "≥" or "∂"
