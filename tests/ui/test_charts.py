"""The delta-norm heat map: a log scale, so small modules stay distinguishable."""

from __future__ import annotations

import re

from loreg.ui.charts import color_for, heatmap_svg, log_position, norm_grid, positive_low


def _fills(svg: str) -> dict[str, str]:
    """module -> fill colour of its cell."""
    return {m: f for f, m in re.findall(r'fill="(#[0-9a-f]{6})"><title>([^:]+):', svg)}


def test_log_position() -> None:
    assert log_position(1e-3, 1e-3, 10.0) == 0.0
    assert log_position(10.0, 1e-3, 10.0) == 1.0
    assert abs(log_position(0.1, 1e-3, 10.0) - 0.5) < 1e-9  # the geometric middle
    assert log_position(0.0, 1e-3, 10.0) == 0.0
    assert log_position(5.0, 5.0, 5.0) == 0.5


def test_small_modules_stay_distinguishable() -> None:
    """Norms over four orders of magnitude: on a linear scale the three small ones would
    share the palest colour; on the log scale each gets its own."""
    modules = {
        "model.layers.0.self_attn.q_proj": {"delta_norm": 0.001},
        "model.layers.0.self_attn.k_proj": {"delta_norm": 0.01},
        "model.layers.0.self_attn.v_proj": {"delta_norm": 0.1},
        "model.layers.0.mlp.down_proj": {"delta_norm": 10.0},
        "model.layers.1.self_attn.q_proj": {"delta_norm": 0.0},
    }
    grid = norm_grid(modules)
    assert grid is not None and positive_low(grid) == 0.001
    svg = str(heatmap_svg(grid, "t"))
    fills = _fills(svg)
    small = [fills[f"model.layers.0.self_attn.{k}_proj"] for k in "qkv"]
    assert len(set(small)) == 3, small
    assert fills["model.layers.0.mlp.down_proj"] == color_for(1.0)
    assert fills["model.layers.0.self_attn.q_proj"] == color_for(0.0)
    assert fills["model.layers.0.self_attn.k_proj"] == color_for(0.25)
    # what a linear scale (value / max) would have drawn: q and k in one colour
    assert color_for(0.001 / 10.0) == color_for(0.01 / 10.0)
    # a zero delta is marked as such, and the legend says the scale
    assert "hm-zero" in svg and "log scale" in svg
    legend = re.findall(r'class="hm-tick hm-legend"[^>]*>([^<]+)<', svg)
    assert legend == ["0.001", "0.1", "10"]
