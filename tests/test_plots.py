"""audit.plots: the log axes' minor ticks, dense on a short axis and sparse on a long one."""

import numpy as np
import pytest

from audit import plots


@pytest.mark.parametrize(
    ("limits", "subs"),
    [((1e-6, 1.0), (2, 5)), ((1e-3, 0.5), (2, 5)), ((0.02, 1.0), tuple(range(2, 10)))],
)
def test_minor_ticks_of_a_log_axis(limits, subs):
    fig = plots.new_figure()
    ax = fig.subplots()
    plots.log_y(ax)
    ax.set_ylim(*limits)
    ticks = [t for t in ax.yaxis.get_minorticklocs() if limits[0] <= t <= limits[1]]
    lo, hi = int(np.floor(np.log10(limits[0]))), int(np.ceil(np.log10(limits[1])))
    expect = [s * 10.0**e for e in range(lo, hi) for s in subs]
    expect = [t for t in expect if limits[0] <= t <= limits[1]]
    np.testing.assert_allclose(ticks, expect, rtol=1e-12)
    assert ax.get_yscale() == "log"
