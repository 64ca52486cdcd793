"""report.html laid out by a real browser (headless Chromium) at 1280 and 420 px wide: no
page-wide sideways scroll, every table's name and verdict cells in view, figures inside the
page. Headless Chromium makes no window narrower than 500 px, so the report is shown in a
frame of the width under test: inside it the page sees a viewport of exactly that width.

Skipped when no Chromium is installed, unless JAXBP_BROWSER_TESTS=1 (as .ci/run sets after
installing it), which turns a missing or broken browser into a failure.
"""

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from audit.report import write_report
from tests.test_report import make_result

BROWSER = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
REQUIRED = os.environ.get("JAXBP_BROWSER_TESTS") == "1"

# Runs after the page has loaded: reads the layout and writes what it saw into the page.
MEASURE = """<script>
addEventListener("load", () => {
  const seen = {width: innerWidth, pageWidth: document.documentElement.scrollWidth,
                visibleWidth: document.documentElement.clientWidth,
                cells: [], boxes: [], images: []};
  function inView(cell) {
    scrollTo(0, cell.getBoundingClientRect().top + scrollY - innerHeight / 2);
    const r = cell.getBoundingClientRect();
    const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
    return r.left >= 0 && r.right <= innerWidth && hit !== null && cell.contains(hit);
  }
  for (const box of document.querySelectorAll(".scroll")) {
    const table = box.querySelector("table");
    const heads = [...table.rows[0].cells].map(c => c.textContent);
    seen.boxes.push({heads: heads, scrolls: box.scrollWidth > box.clientWidth});
    const v = heads.indexOf("verdict");
    for (const row of [...table.rows].slice(1, 4)) {
      seen.cells.push({table: heads[0], name: row.cells[0].textContent,
                       nameInView: inView(row.cells[0]),
                       verdict: v < 0 ? null : row.cells[v].textContent,
                       verdictInView: v < 0 ? null : inView(row.cells[v])});
    }
  }
  for (const img of document.images) {
    const r = img.getBoundingClientRect();
    seen.images.push({title: img.title, left: r.left, right: r.right, width: r.width});
  }
  parent.postMessage(JSON.stringify(seen), "*");
});
</script>
"""
# The page around the frame: writes what the framed report measured into itself.
FRAME = """<!DOCTYPE html><html><body style="margin: 0">
<iframe src="{src}" style="width: {width}px; height: {height}px; border: 0; display: block">
</iframe>
<script>
addEventListener("message", (event) => {{
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = event.data;
  document.body.appendChild(out);
}});
</script>
</body></html>
"""


def chromium(tmp_path, *args):
    """Runs headless Chromium with a fresh profile and no network; returns its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    command = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def framed(tmp_path, page, width, height=900):
    """A page showing ``page`` (a file) in a frame ``width`` x ``height`` px, and the
    ``--window-size`` that holds it."""
    outer = tmp_path / f"frame-{width}-{page.stem}.html"
    outer.write_text(FRAME.format(src=page.as_uri(), width=width, height=height))
    return outer, f"--window-size={max(width, 500)},{height}"


def measure(tmp_path, page, width):
    """What the browser laid out for ``page`` (report.html's text) in a ``width`` px viewport."""
    probe = tmp_path / f"measure-{width}.html"
    probe.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    outer, size = framed(tmp_path, probe, width)
    dom = chromium(
        tmp_path, "--allow-file-access-from-files", size, "--virtual-time-budget=5000",
        "--dump-dom", outer.as_uri(),
    )  # fmt: skip
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if BROWSER is None:
        if REQUIRED:
            pytest.fail("JAXBP_BROWSER_TESTS=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH (JAXBP_BROWSER_TESTS=1 makes this a failure)")
    out = tmp_path_factory.mktemp("layout") / "report"
    result = make_result(failing=("w12", "w21"))
    result["notes"].append("a long path " + "/very-long-folder-name" * 12 + " in a note")
    write_report(result, out)
    return out


@pytest.mark.parametrize("width", [1280, 420])
def test_no_page_wide_scroll_and_every_verdict_in_view(report, tmp_path, width):
    seen = measure(tmp_path, (report / "report.html").read_text(encoding="utf-8"), width)
    assert seen["width"] == width
    assert seen["pageWidth"] <= seen["visibleWidth"] <= width, seen
    tables = {c["table"] for c in seen["cells"]}
    assert {"tensor", "weight", "factor", "setting"} <= tables
    for cell in seen["cells"]:
        assert cell["nameInView"], cell
        if cell["verdict"] is not None:
            assert cell["verdictInView"], cell
    assert [c["verdict"] for c in seen["cells"] if c["table"] == "weight"][:2] == ["FAIL"] * 2
    assert {i["title"] for i in seen["images"]} >= {"network.png", "weight_errors.png"}
    for image in seen["images"]:
        assert 0 <= image["left"] and image["right"] <= width and image["width"] > 0, image
    if width == 420:  # narrow: the weight table scrolls inside its own box, not the page
        weights = next(b for b in seen["boxes"] if b["heads"][0] == "weight")
        assert weights["scrolls"]


def test_screenshots_at_both_widths(report, tmp_path):
    """The screenshot is what a reader sees: the failing verdict at the top, in its colour."""
    from matplotlib.image import imread

    for width in (1280, 420):
        shot = tmp_path / f"report-{width}.png"
        outer, size = framed(tmp_path, report / "report.html", width)
        chromium(tmp_path, size, "--virtual-time-budget=5000", f"--screenshot={shot}",
                 outer.as_uri())  # fmt: skip
        image = imread(shot)[:, :width]  # the frame; a window is at least 500 px wide
        # the verdict banner of a failing audit: its red text on a pale red band is in view
        top = image[: image.shape[0] // 3, :, :3]
        reddish = (top[..., 0] > 0.55) & (top[..., 1] < 0.2) & (top[..., 2] < 0.2)
        assert reddish.sum() > 50
