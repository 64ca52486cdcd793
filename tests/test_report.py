"""Tests for audit.report, audit.table and audit.plots, on hand-built report dicts."""

import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxbp
from audit import network_figure, plots
from audit.cells import sci, verdict_line
from audit.report import REPORT_FILES, ReportError, check_out_dir, write_report
from audit.report_json import schema
from audit.result import AuditResult
from audit.table import format_table

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["w11", "w12", "w21", "w22", "b1", "b2", "w31", "w32", "b3"]
KEYS = [
    "schema", "schema_version", "jaxbp_version", "passed", "verdict", "counts", "config",
    "tolerance", "points", "weights", "factors", "first_failing_factor", "notes", "training",
    "files", "timing",
]  # fmt: skip
SWAP_HINT = (
    "matches jax.grad of w21: swapped indices (w12 <-> w21); the note's dz1/dw12 = x2, so "
    "check which input multiplies which weight in the forward pass"
)


def make_result(*, failing=(), training=True, steps=50, names=NAMES):
    """A report dict shaped like ``AuditResult.to_dict()``; ``failing`` weights are 50% off."""
    weights = []
    for i, name in enumerate(names):
        ref = (-1) ** i * 1.2345678e-3 * (i + 1)
        bad = name in failing
        man = ref * 1.5 if bad else ref * (1 + 1e-7)
        weights.append(
            {
                "name": name, "manual": man, "reference": ref, "finite_diff": ref * (1 + 1e-5),
                "abs_err": abs(man - ref), "rel_err": abs(man - ref) / abs(ref),
                "allowed_err": 1e-3 * abs(ref), "score": abs(man - ref) / (1e-3 * abs(ref)),
                "passed": not bad, "status": "fail" if bad else "pass", "precision": None,
                "not_judgeable": 0, "hint": SWAP_HINT if bad else None, "saturated": False,
                "worst_point": {"index": 3, "source": "random", "label": "random draw 3"},
            }
        )  # fmt: skip
    factors = [
        {
            "name": n, "manual": 0.1, "reference": 0.1, "abs_err": 0.0, "rel_err": 0.0,
            "allowed_err": 1e-4, "score": 0.0, "passed": True, "status": "pass",
            "precision": None, "not_judgeable": 0,
            "worst_point": {"index": 0, "source": "seed_example", "label": "seed worked example"},
        }
        for n in ("dE/dA3", "dA3/dz3", "delta_2 (dE/dz_2)")
    ]  # fmt: skip
    if failing:
        factors[2].update(passed=False, status="fail", manual=0.2, abs_err=0.1, rel_err=0.5,
                          score=1e3)  # fmt: skip
    tr = None
    if training:
        lm = [0.25 * 0.99**t for t in range(steps)]
        la = [v * (1 + (1e-7 if t % 3 else 0.0)) for t, v in enumerate(lm)]
        tr = {
            "steps": steps, "grad": "seed", "optimizer": "gradient descent",
            "learning_rate": 2.0, "checkpoints": [0, steps // 2, steps], "loss_manual": lm,
            "loss_autodiff": la, "max_loss_diff": 2.5e-8, "max_param_diff": 1e-7,
        }  # fmt: skip
    return {
        "passed": not failing,
        "config": {
            "grad": "seed", "sizes": [2, 2, 1], "activation": "sigmoid", "loss": "mse",
            "output_activation": "sigmoid", "points": 64, "seed": 0, "dtype": "float32",
            "steps": steps if training else 0, "learning_rate": 2.0, "data": "xor",
            "rtol": 1e-3, "atol": 0.0, "fd": True, "jax_version": "0.10.2", "backend": "cpu",
            "devices": ["TFRT_CPU_0"], "reference_dtype": "float64",
        },
        "tolerance": {
            "rtol": 1e-3, "atol": 0.0, "floor": 1e-2,
            "rule": "passed = both finite and rel_err <= rtol or abs_err <= atol",
        },
        "points": {"total": 70, "seed_example": 1, "random": 64, "trajectory": 5, "traced": True},
        "weights": weights,
        "factors": factors,
        "first_failing_factor": "delta_2 (dE/dz_2)" if failing else None,
        "notes": ["float32 gradients compared with float64 references"],
        "training": tr,
        "files": [],
        "timing": {"total_s": 1.25},
    }  # fmt: skip


def with_nonfinite(result):
    """w11 nan, w12 inf with a missing rel_err, w21 an exact 0 error: all failing but w21."""
    result = copy.deepcopy(result)
    w = result["weights"]
    w[0].update(manual="nan", abs_err="nan", rel_err="nan", passed=False, status="fail",
                hint="NaN in w11")  # fmt: skip
    w[1].update(manual="inf", abs_err="inf", rel_err=None, finite_diff=None, passed=False,
                status="fail")  # fmt: skip
    w[2].update(manual=w[2]["reference"], abs_err=0.0, rel_err=0.0)
    result["passed"] = False
    return result


@pytest.fixture
def fast_plots(monkeypatch):
    """Stand-in figures for tests about files and directories, not about pictures."""
    for name in ("loss_curves", "weight_errors", "scatter"):
        monkeypatch.setattr(plots, name, lambda result, name=name: PNG + name.encode())
    monkeypatch.setattr(network_figure, "network_png", lambda result: PNG + b"network")


def listing(path):
    return sorted(os.listdir(path))


def leftovers(parent):
    return [n for n in os.listdir(parent) if n.startswith(".audit-")]


# --------------------------------------------------------------------------------------------
# write_report
# --------------------------------------------------------------------------------------------


def test_report_files_complete(tmp_path):
    out = tmp_path / "report"
    files = write_report(make_result(), out)
    names = [os.path.basename(f) for f in files]
    assert names == list(REPORT_FILES)
    assert listing(out) == sorted(REPORT_FILES)
    assert files == [os.path.join(str(out), n) for n in names]
    for name in names:
        assert (out / name).stat().st_size > 0
        if name.endswith(".png"):
            assert (out / name).read_bytes().startswith(PNG)
    assert leftovers(tmp_path) == []


def test_report_json_schema_order_and_files(fast_plots, tmp_path):
    write_report(make_result(failing=("w12",)), tmp_path / "r")
    text = (tmp_path / "r" / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in report.json"))
    assert list(data) == KEYS
    assert data["files"] == list(REPORT_FILES)
    assert [w["name"] for w in data["weights"]] == NAMES
    assert data["passed"] is False and data["verdict"] == "failed"
    assert data["counts"]["weights"]["fail"] == 1
    assert (data["schema"], data["schema_version"]) == ("jaxbp-audit-report", 1)
    assert data["jaxbp_version"] == jaxbp.__version__
    assert text.startswith('{\n  "schema": "jaxbp-audit-report",')  # indent 2, schema order
    jsonschema.Draft202012Validator(schema()).validate(data)


def test_report_json_writes_nonfinite_numbers_as_null_and_says_which(fast_plots, tmp_path):
    result = make_result()
    result["weights"][0]["manual"] = math.nan
    result["weights"][1]["rel_err"] = "-inf"  # as AuditResult.to_dict holds it
    result["training"]["loss_manual"][-1] = math.inf
    write_report(result, tmp_path / "r")
    text = (tmp_path / "r" / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in report.json"))
    w0, w1, w2 = data["weights"][:3]
    assert (w0["manual"], w0["nonfinite"]) == (None, {"manual": "nan"})
    assert (w1["rel_err"], w1["nonfinite"]) == (None, {"rel_err": "-inf"})
    assert w2["nonfinite"] == {}
    assert data["training"]["loss_manual"][-1] is None
    assert data["training"]["nonfinite"] == {"loss_manual": 1}
    jsonschema.Draft202012Validator(schema()).validate(data)
    # every number field holds a number or null, never a string
    for w in data["weights"]:
        for k in ("manual", "reference", "abs_err", "rel_err", "allowed_err", "score"):
            assert w[k] is None or isinstance(w[k], (int, float))


def test_report_accepts_audit_result_and_does_not_mutate_it(fast_plots, tmp_path):
    result = AuditResult(**make_result())
    write_report(result, tmp_path / "r")
    assert result.files == []
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["files"] == list(REPORT_FILES)


def test_html_is_self_contained(tmp_path):
    write_report(with_nonfinite(make_result(failing=("w22",))), tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    for banned in ("http://", "https://", 'src="//', 'href="//', "<link", "<script"):
        assert banned not in page
    assert page.count('src="data:image/png;base64,') == 4  # the network figure and 3 plots
    assert page.index("<h2>Network</h2>") < page.index('title="network.png"')
    assert page.index('title="network.png"') < page.index("<h2>Weights</h2>")
    assert "<style>" in page
    for name in NAMES:
        assert f"<td>{name}</td>" in page
    assert "FAIL" in page and "nan" in page and "inf" in page
    assert "swapped indices (w12 &lt;-&gt; w21)" in page  # escaped, not raw HTML


def test_markdown_tables_and_links(fast_plots, tmp_path):
    write_report(make_result(failing=("w12",)), tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.startswith("# Gradient audit: FAILED")
    assert "\nPoints: 70 (1 seed example, 64 random, 5 on the training trajectory; " in md
    for png in ("network.png", "loss_curves.png", "weight_errors.png", "scatter.png"):
        assert f"]({png})" in md
    # the network figure follows the summary, before the long tables
    assert md.index("## Summary") < md.index("## Network") < md.index("](network.png)")
    assert md.index("](network.png)") < md.index("## Weights") < md.index("## Figures")
    row = next(line for line in md.splitlines() if line.startswith("| w12 |"))
    assert "FAIL" in row and "swapped indices" in row
    assert "| delta_2 (dE/dz_2) |" in md


def _flagged_result():
    result = make_result()
    text = "loses 4 digits in float32 here: cancellation in 1 - A near saturation; agrees ..."
    result["factors"][1].update(
        status="precision", manual=2.1696e-05, reference=2.1650e-05,
        precision={"digits_lost": 4, "points": 3, "how": "float64", "text": text},
    )  # fmt: skip
    return result


def test_every_format_shows_and_counts_a_rounding_pass(fast_plots, tmp_path):
    write_report(_flagged_result(), tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    page = (tmp_path / "r" / "report.html").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| dA3/dz3 |"))
    assert "| PASS* |" in row and "loses 4 digits in float32 here" in row
    verdict = "1 factor (dA3/dz3) passes as rounding (PASS*)"
    assert verdict in md and verdict in page
    assert "- PASS*: agrees once rounding" in md
    assert '<td class="v flag">PASS*</td>' in page and "loses 4 digits in float32 here" in page
    assert format_table(_flagged_result()).count("PASS*") >= 2  # the cell and the legend


def test_a_never_judged_weight_heads_the_report_as_not_judged(fast_plots, tmp_path):
    result = make_result()
    result["passed"] = False
    result["weights"][0].update(status="not_judged", passed=False, reference="nan")
    write_report(result, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    page = (tmp_path / "r" / "report.html").read_text()
    assert md.startswith("# Gradient audit: NOT JUDGED")
    assert '<td class="v unjudged">NOT JUDGED</td>' in page
    assert "jax.grad was not finite at every point" in md


def test_report_without_training_has_no_loss_curve(fast_plots, tmp_path):
    files = write_report(make_result(training=False), tmp_path / "r")
    assert "loss_curves.png" not in listing(tmp_path / "r")
    assert "loss_curves.csv" not in listing(tmp_path / "r")
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["training"] is None
    assert data["files"] == [os.path.basename(f) for f in files]
    assert "loss_curves.png" not in (tmp_path / "r" / "report.md").read_text()


def test_rerun_replaces_the_whole_directory(fast_plots, tmp_path):
    out = tmp_path / "r"
    write_report(make_result(), out)
    assert "loss_curves.png" in listing(out)
    write_report(make_result(training=False), out)
    assert listing(out) == sorted(set(REPORT_FILES) - {"loss_curves.png", "loss_curves.csv"})
    assert leftovers(tmp_path) == []


def test_report_dir_permissions_follow_umask(fast_plots, tmp_path):
    write_report(make_result(), tmp_path / "r")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o777 & ~mask


def test_crash_while_plotting_keeps_previous_report(fast_plots, tmp_path, monkeypatch):
    out = tmp_path / "r"
    write_report(make_result(), out)
    before = {n: (out / n).read_bytes() for n in listing(out)}

    def broken(result):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "scatter", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(make_result(failing=("w11",)), out)
    assert {n: (out / n).read_bytes() for n in listing(out)} == before
    assert leftovers(tmp_path) == []


def test_failed_swap_puts_previous_report_back(fast_plots, tmp_path, monkeypatch):
    out = tmp_path / "r"
    write_report(make_result(), out)
    before = {n: (out / n).read_bytes() for n in listing(out)}
    real_rename = os.rename

    def rename(src, dst):
        if os.path.basename(str(src)).startswith(".audit-tmp-"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(ReportError, match="No space left on device"):
        write_report(make_result(failing=("w11",)), out)
    monkeypatch.undo()
    assert {n: (out / n).read_bytes() for n in listing(out)} == before
    assert leftovers(tmp_path) == []


def test_out_path_that_is_a_file(fast_plots, tmp_path):
    target = tmp_path / "report"
    target.write_text("not a directory")
    with pytest.raises(ReportError, match="exists and is not a directory"):
        write_report(make_result(), target)
    assert target.read_text() == "not a directory"
    with pytest.raises(ReportError, match="is a file, not a directory"):
        write_report(make_result(), target / "sub")
    assert leftovers(tmp_path) == []


def test_unwritable_parent_is_refused_before_writing(fast_plots, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ReportError, match="is not writable"):
        write_report(make_result(), tmp_path / "r")
    assert listing(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_parent_is_refused(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(ReportError, match="is not writable"):
            check_out_dir(parent / "r")
    finally:
        parent.chmod(0o700)


def test_directory_with_other_files_is_never_replaced(fast_plots, tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "report.json").write_text("{}")
    with pytest.raises(ReportError, match=r"refusing to replace .*notes\.txt"):
        write_report(make_result(), out)
    assert listing(out) == ["notes.txt", "report.json"]
    (out / "notes.txt").unlink()
    (out / "sub").mkdir()
    with pytest.raises(ReportError, match="sub"):
        write_report(make_result(), out)


def test_empty_existing_directory_and_missing_parents_are_fine(fast_plots, tmp_path):
    (tmp_path / "empty").mkdir()
    write_report(make_result(), tmp_path / "empty")
    write_report(make_result(), tmp_path / "a" / "b" / "c")
    assert "report.html" in listing(tmp_path / "a" / "b" / "c")


def test_symlinked_out_dir_is_refused(fast_plots, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ReportError, match="symbolic link"):
        write_report(make_result(), tmp_path / "link")


def test_report_error_is_a_value_error():
    assert issubclass(ReportError, ValueError)


REFUSED = (
    "refusing to write the report to {shown!r}: it is {what}, and the report directory is "
    "replaced as a whole; pass a new folder of its own instead, such as {instead!r}"
)


def test_empty_out_dir_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = "the report directory is '', an empty path; pass a folder name such as 'audit-report'"
    with pytest.raises(ReportError, match=re.escape(message)):
        check_out_dir("")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("shown", [".", "./", "../here", "{cwd}"])
def test_current_directory_is_refused(shown, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    shown = shown.format(cwd=here)
    message = REFUSED.format(shown=shown, what="the current directory", instead="audit-report")
    with pytest.raises(ReportError, match=re.escape(message)):
        write_report(make_result(), shown)
    assert listing(tmp_path) == ["here"] and listing(here) == []


def test_folders_above_the_current_directory_are_refused(tmp_path, monkeypatch):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    what = f"a folder above the current directory ({os.path.realpath(deep)})"
    for shown, instead in (("..", "../audit-report"), (str(tmp_path), f"{tmp_path}/audit-report")):
        message = REFUSED.format(shown=shown, what=what, instead=instead)
        with pytest.raises(ReportError, match=re.escape(message)):
            check_out_dir(shown)


def test_root_and_home_are_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    cases = [
        ("/", "the filesystem root", "/audit-report"),
        (str(home), "the home directory", f"{home}/audit-report"),
    ]
    for shown, what, instead in cases:
        message = REFUSED.format(shown=shown, what=what, instead=instead)
        with pytest.raises(ReportError, match=re.escape(message)):
            check_out_dir(shown)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_a_place_that_refuses_new_folders_is_found_before_writing():
    message = (
        "cannot write the report to '/proc/audit-report': directory '/proc' does not accept "
        "new folders ("
    )
    with pytest.raises(ReportError, match=re.escape(message)) as e:
        check_out_dir("/proc/audit-report")
    assert str(e.value).endswith("); pass a path you can write to")


def dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def leftover(parent, name, files=("report.json",), age_s=0.0):
    folder = parent / name
    folder.mkdir()
    for f in files:
        (folder / f).write_text("x")
    if age_s:
        t = time.time() - age_s
        os.utime(folder, (t, t))
    return folder


def test_leftovers_of_killed_runs_are_cleaned_and_nothing_else(fast_plots, tmp_path):
    from audit.report import _HOST, STALE_AFTER_S

    write_report(make_result(), tmp_path / "r")
    gone, alive = dead_pid(), os.getppid()
    dead = leftover(tmp_path, f".audit-tmp-{gone}-{_HOST}-abc", REPORT_FILES)
    running = leftover(tmp_path, f".audit-tmp-{alive}-{_HOST}-abc")
    other_host = leftover(tmp_path, f".audit-tmp-{gone}-0badc0de-abc")
    ancient = leftover(tmp_path, ".audit-tmp-k2j4h5g6", age_s=STALE_AFTER_S + 60)
    foreign = leftover(tmp_path, f".audit-tmp-{gone}-{_HOST}-xyz", ("thesis.tex",))
    trash_done = leftover(tmp_path, f".audit-old-{gone}-{_HOST}-abc", ())
    leftover(trash_done, "r", REPORT_FILES)
    trash_only_copy = leftover(tmp_path, f".audit-old-{gone}-{_HOST}-def", ())
    leftover(trash_only_copy, "lost", REPORT_FILES)
    write_report(make_result(), tmp_path / "r")
    assert not dead.exists() and not ancient.exists() and not trash_done.exists()
    for kept in (running, other_host, foreign, trash_only_copy):
        assert kept.exists(), kept.name
    assert listing(trash_only_copy / "lost") == sorted(REPORT_FILES)


def test_a_symlink_that_looks_like_a_leftover_is_never_followed(fast_plots, tmp_path):
    from audit.report import _HOST

    precious = tmp_path / "precious"
    leftover(tmp_path, "precious", ("report.json",))
    (tmp_path / f".audit-tmp-{dead_pid()}-{_HOST}-abc").symlink_to(precious)
    write_report(make_result(), tmp_path / "r")
    assert listing(precious) == ["report.json"]


def snapshot(out):
    return {n: (out / n).read_bytes() for n in listing(out)}


WRITE_STEPS = [
    ("plot", lambda mp: mp.setattr(plots, "weight_errors", interrupted)),
    ("json", lambda mp: patch_write(mp, "report.json")),
    ("html", lambda mp: patch_write(mp, "report.html")),
    ("chmod", lambda mp: mp.setattr(os, "chmod", interrupted)),
    ("rename aside", lambda mp: patch_rename(mp, 1)),
    ("rename in", lambda mp: patch_rename(mp, 2)),
]


def interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def patch_write(mp, name):
    from pathlib import Path

    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == name:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    mp.setattr(Path, "write_text", write_text)


def patch_rename(mp, n):
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == n:
            raise KeyboardInterrupt
        real(src, dst)

    mp.setattr(os, "rename", rename)


@pytest.mark.parametrize("step", [s for s, _ in WRITE_STEPS])
def test_ctrl_c_at_any_write_step_keeps_the_previous_report(step, fast_plots, tmp_path):
    out = tmp_path / "r"
    write_report(make_result(), out)
    before = snapshot(out)
    with pytest.MonkeyPatch.context() as mp:
        dict(WRITE_STEPS)[step](mp)
        with pytest.raises(KeyboardInterrupt):
            write_report(make_result(failing=("w11",)), out)
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("existing", [True, False])
def test_sigint_during_the_swap_waits_then_undoes_it(existing, fast_plots, tmp_path, monkeypatch):
    out = tmp_path / "r"
    if existing:
        write_report(make_result(), out)
    before = snapshot(out) if existing else None
    real = os.rename

    def rename(src, dst):
        signal.raise_signal(signal.SIGINT)  # held: recorded, the rename goes on
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        write_report(make_result(failing=("w11",)), out)
    monkeypatch.undo()
    if existing:
        assert snapshot(out) == before
    else:
        assert not out.exists()
    assert leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_ignored_by_the_process_stays_ignored(fast_plots, tmp_path, monkeypatch):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        real = os.rename

        def rename(src, dst):
            signal.raise_signal(signal.SIGINT)
            real(src, dst)

        monkeypatch.setattr(os, "rename", rename)
        write_report(make_result(), tmp_path / "r")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "report.json" in listing(tmp_path / "r")


# --------------------------------------------------------------------------------------------
# format_table and verdict_line
# --------------------------------------------------------------------------------------------


def weight_rows(text):
    return [line for line in text.splitlines() if re.match(r"(w\d|b\d)", line)]


def test_table_lists_every_weight_and_passes():
    text = format_table(make_result())
    for name in NAMES:
        assert re.search(rf"^{name}\s", text, re.M)
    assert "FAIL" not in text
    assert (
        text.splitlines()[-1] == "PASSED: 9/9 weights, 3/3 factors agree with jax.grad at 70 points"
    )
    assert "final loss: handwritten" in text and "max |param diff| 1.0000e-07" in text


def test_table_columns_are_aligned():
    text = format_table(with_nonfinite(make_result(failing=("w32",))))
    header = next(line for line in text.splitlines() if line.startswith("weight"))
    col = header.index("verdict")
    rows = weight_rows(text)
    assert len(rows) == 9
    assert all(row[col : col + 4] in ("PASS", "FAIL") for row in rows)
    hint = header.index("hint")
    hinted = [row for row in rows if len(row) > hint]
    assert [row[:3] for row in hinted] == ["w11", "w32"]
    assert all(row[hint - 2 : hint] == "  " and row[hint] != " " for row in hinted)


def test_table_failing_rows_show_fail_and_hint():
    text = format_table(make_result(failing=("w12", "w21")))
    for name in ("w12", "w21"):
        row = next(r for r in weight_rows(text) if r.startswith(name))
        assert "FAIL" in row and "matches jax.grad of w21" in row
    assert "first failing factor: delta_2 (dE/dz_2)" in text
    assert text.splitlines()[-1].startswith("FAILED: 2 of 9 weights (w12, w21) ")


def test_long_hints_wrap_under_the_hint_column():
    text = format_table(make_result(failing=("w12",)), hint_width=30)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("weight"))
    start = header.index("hint")
    i = next(k for k, line in enumerate(lines) if line.startswith("w12"))
    continuation = lines[i + 1]
    assert continuation[:start].strip() == "" and continuation[start:].strip()
    assert all(len(line) - start <= 30 for line in lines[i : i + 3])
    assert lines[i + 3].startswith("w11")  # at most three lines per hint; failing rows first


def test_nonfinite_and_missing_values_are_shown():
    text = format_table(with_nonfinite(make_result()))
    w11 = next(r for r in weight_rows(text) if r.startswith("w11"))
    w12 = next(r for r in weight_rows(text) if r.startswith("w12"))
    assert w11.split()[1] == "nan" and "NaN in w11" in w11
    assert w12.split()[1] == "inf" and w12.split()[3] == "-"
    assert "FAILED: 2 of 9 weights (w11, w12)" in text


def test_max_rows_shows_failures_first_and_counts_the_rest():
    names = [f"w{i}_{j}" for i in range(10, 20) for j in range(1, 11)]
    result = make_result(failing=("w13_4", "w17_2"), names=names)
    text = format_table(result, max_rows=5)
    rows = [line for line in text.splitlines() if line.startswith("w1")]
    assert len(rows) == 5
    assert {rows[0].split()[0], rows[1].split()[0]} == {"w13_4", "w17_2"}
    assert "(95 more weights not shown, all passing)" in text
    assert "(99 more weights not shown, 1 of them failing)" in format_table(result, max_rows=1)


def test_color_only_when_asked():
    result = make_result(failing=("w12",))
    assert "\x1b[" not in format_table(result)
    colored = format_table(result, color=True)
    assert "\x1b[31mFAIL" in colored and "\x1b[32mPASS" in colored
    plain = re.sub(r"\x1b\[[0-9;]*m", "", colored)
    assert plain == format_table(result)


def test_verdict_when_only_factors_fail_or_nothing_is_listed():
    result = make_result()
    result["passed"] = False
    result["factors"][0].update(passed=False, status="fail")
    assert verdict_line(result) == (
        "FAILED: 1 of 3 factors (dE/dA3) disagree with jax.grad at 70 points"
    )
    result["factors"][0].update(passed=True, status="pass")
    assert verdict_line(result).startswith("FAILED: all 9 weights and 3 factors agree")


def test_verdict_names_at_most_six_failures():
    result = make_result(failing=tuple(NAMES))
    assert "(w11, w12, w21, w22, b1, b2, and 3 more)" in verdict_line(result)


@given(st.floats(min_value=-1e300, max_value=1e300))
def test_sci_round_trips_to_five_digits(v):
    text = sci(v)
    assert re.fullmatch(r"-?\d\.\d{4}e[+-]\d{2,3}", text)
    assert float(text) == pytest.approx(v, rel=1e-4, abs=0)


def test_sci_special_values():
    assert [sci(v) for v in (None, "nan", "inf", "-inf", math.nan, -math.inf, "junk")] == [
        "-", "nan", "inf", "-inf", "nan", "-inf", "-",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------

PLOTS = (plots.loss_curves, plots.weight_errors, plots.scatter)


def test_plots_are_png_and_deterministic():
    result = make_result(failing=("w12",))
    for plot in PLOTS:
        first = plot(result)
        assert first.startswith(PNG)
        assert plot(copy.deepcopy(result)) == first
        assert len(first) < 200_000
    assert plots.weight_errors(make_result()) != plots.weight_errors(result)


def test_plots_handle_nan_inf_none_and_zero():
    result = with_nonfinite(make_result())
    result["training"]["loss_manual"][3] = "nan"
    for plot in PLOTS:
        assert plot(result).startswith(PNG)


def test_loss_curves_identical_histories_and_no_training():
    result = make_result()
    result["training"]["loss_autodiff"] = list(result["training"]["loss_manual"])
    assert plots.loss_curves(result).startswith(PNG)
    with pytest.raises(ValueError, match="no training"):
        plots.loss_curves(make_result(training=False))


def test_long_histories_and_big_networks_plot_quickly():
    names = [f"w{i}_{j}" for i in range(10, 40) for j in range(1, 11)]
    result = make_result(failing=("w12_3",), names=names, steps=20_000)
    for plot in PLOTS:
        assert plot(result).startswith(PNG)


def test_plots_leave_no_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for plot in PLOTS:
        plot(make_result())
    assert plt.get_fignums() == before


@pytest.mark.parametrize("module", ["audit", "jaxbp", "audit.cli", "audit.report"])
def test_importing_does_not_import_matplotlib(module):
    # matplotlib takes about a second to import: only drawing a plot may pull it in
    code = f"import {module}, sys; print('matplotlib' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


def test_drawing_a_plot_imports_matplotlib():
    code = (
        "import sys, audit.plots as p; before = 'matplotlib' in sys.modules; "
        "png = p.scatter({'weights': []}); print(before, png[:4] == b'\\x89PNG', "
        "'matplotlib' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "True", "True"]
