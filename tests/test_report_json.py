"""audit.report_json: report.json follows its shipped JSON Schema, numbers are numbers, long
curves are thinned with the full ones beside them, and two runs differ only in timing."""

import csv
import io
import json
import math

import jax
import jax.numpy as jnp
import jsonschema
import numpy as np
import pytest

import audit
import jaxbp
from audit.cli import main
from audit.report_json import CURVE_POINTS, curves_csv, document, schema, thinned_steps
from tests.broken_gradients import BROKEN, batched

VALIDATOR = jsonschema.Draft202012Validator(schema())


def test_the_shipped_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["properties"]["schema_version"] == {"const": 1}


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 1001, 5000, 123457])
def test_thinned_steps_keep_the_first_and_last_and_at_most_the_limit(n):
    steps = thinned_steps(n)
    assert len(steps) == min(n, len(steps)) <= CURVE_POINTS
    if n:
        assert steps[0] == 0 and steps[-1] == n - 1
        assert np.all(np.diff(steps) > 0)
    if n <= CURVE_POINTS:
        assert steps.tolist() == list(range(n))


def test_curves_csv_holds_every_value_exactly():
    lm = [0.25 * 0.99**t for t in range(1500)]
    la = [v * (1 + 1e-7) for v in lm]
    lm[7], la[9] = math.nan, -math.inf
    text = curves_csv({"training": {"loss_manual": lm, "loss_autodiff": la}})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["step", "loss_manual", "loss_autodiff"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1500))
    back_m = [float(r[1]) for r in rows[1:]]
    back_a = [float(r[2]) for r in rows[1:]]
    assert math.isnan(back_m[7]) and back_a[9] == -math.inf
    assert [v for i, v in enumerate(back_m) if i != 7] == [v for i, v in enumerate(lm) if i != 7]
    assert [v for i, v in enumerate(back_a) if i != 9] == [v for i, v in enumerate(la) if i != 9]
    assert curves_csv({"training": None}) is None


def test_document_flags_every_nonfinite_number_and_keeps_finite_ones():
    doc = document(
        {
            "passed": False,
            "weights": [{"name": "w", "manual": "inf", "reference": 2.0, "status": "fail"}],
            "factors": [],
            "training": {"loss_manual": [1.0, math.nan, math.nan], "loss_autodiff": [1.0] * 3},
        },
        version="9.9",
    )
    assert (doc["verdict"], doc["jaxbp_version"]) == ("failed", "9.9")
    assert doc["weights"][0] == {
        "name": "w", "manual": None, "reference": 2.0, "status": "fail",
        "nonfinite": {"manual": "inf"},
    }  # fmt: skip
    assert doc["training"]["loss_manual"] == [1.0, None, None]
    assert doc["training"]["nonfinite"] == {"loss_manual": 2}
    assert doc["counts"]["weights"]["fail"] == 1
    json.dumps(doc, allow_nan=False)


def _run(out, *extra):
    code = main(["--out", str(out), "--points", "8", "--steps", "2500", "--quiet", *extra])
    return code, json.loads((out / "report.json").read_text())


def test_a_real_report_validates_and_two_runs_differ_only_in_timing(tmp_path):
    code_a, a = _run(tmp_path / "a")
    code_b, b = _run(tmp_path / "b")
    assert code_a == code_b == 0
    VALIDATOR.validate(a)
    assert a["counts"] == {
        "weights": {"pass": 9, "precision": 0, "fail": 0, "not_judged": 0},
        "factors": {"pass": 15, "precision": 0, "fail": 0, "not_judged": 0},
    }
    assert all(f["worst_point"]["source"] for f in a["factors"])
    a.pop("timing"), b.pop("timing")
    assert a == b
    # the thinned curves are the full ones at loss_steps; the CSV holds all 2500 steps
    t = a["training"]
    assert t["history_length"] == 2500 and len(t["loss_steps"]) <= CURVE_POINTS
    text = (tmp_path / "a" / t["curves_file"]).read_text()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert len(rows) == 2500
    full = [float(r[1]) for r in rows]
    assert t["loss_manual"] == [full[i] for i in t["loss_steps"]]
    assert t["curves_file"] in a["files"]


def test_a_failing_audit_with_nan_gradients_validates(tmp_path):
    mistake, _, _ = BROKEN["nan_b2"]
    result = audit.audit_network(batched(mistake, "nan_b2"), points=8, steps=50)
    audit.write_report(result, tmp_path / "r")
    data = json.loads(
        (tmp_path / "r" / "report.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"bare {c} in report.json"),
    )
    VALIDATOR.validate(data)
    assert data["verdict"] == "failed" and data["counts"]["weights"]["fail"] == 1
    b2 = next(w for w in data["weights"] if w["name"] == "b2")
    assert b2["manual"] is None and b2["nonfinite"]["manual"] == "nan"
    assert data["jaxbp_version"] == jaxbp.__version__


def test_reports_of_a_custom_rule_and_a_backward_pass_validate(tmp_path):
    from tests.test_backward import _point, _slipped
    from tests.test_backward import forward as bn_forward
    from tests.test_rules import _layer_norm_op, _ln_args

    key = jax.random.key(0)
    rule = audit.check_vjp(_layer_norm_op("dg_sign"), *_ln_args(jnp.float32), key=key)
    back = audit.check_backward(bn_forward, _slipped("sign"), *_point(jnp.float32), key=key)
    for name, result in (("rule", rule), ("backward", back)):
        audit.write_report(result, tmp_path / name)
        data = json.loads((tmp_path / name / "report.json").read_text())
        VALIDATOR.validate(data)
        assert data["verdict"] == "failed"
        assert (tmp_path / name / "report.html").exists()
    assert data["first_failing_factor"] == "hpre"
    assert data["config"]["check"] == "check_backward"
