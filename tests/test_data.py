"""Tests for jaxbp.data: exact values where they are known, geometry where they are random."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp.data import circles, load_csv, one_hot, truth_table, two_moons

KEY = jax.random.key(0)


@pytest.fixture
def x64_off():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def x64_on():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# truth_table
# --------------------------------------------------------------------------------------------

INPUTS = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]


@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("xor", [[0.0], [1.0], [1.0], [0.0]]),
        ("and", [[0.0], [0.0], [0.0], [1.0]]),
        ("or", [[0.0], [1.0], [1.0], [1.0]]),
    ],
)
def test_truth_table_values(name, targets):
    x, y = truth_table(name)
    assert x.dtype == jnp.float32
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(x), np.array(INPUTS, np.float32))
    np.testing.assert_array_equal(np.asarray(y), np.array(targets, np.float32))


def test_truth_table_float64(x64_on):
    x, y = truth_table("xor", dtype=jnp.float64)
    assert x.dtype == jnp.float64
    assert y.dtype == jnp.float64


@pytest.mark.parametrize("name", ["XOR", "nand", ""])
def test_truth_table_unknown_name_lists_valid_ones(name):
    with pytest.raises(ValueError, match=r"unknown truth table .*'xor', 'and', 'or'"):
        truth_table(name)


def test_truth_table_name_not_string():
    with pytest.raises(TypeError, match=r"name must be a string, got int 3"):
        truth_table(3)


# --------------------------------------------------------------------------------------------
# two_moons and circles
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [two_moons, circles])
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_shapes_dtypes_and_balance(make, n):
    x, y = make(n, key=KEY)
    assert x.shape == (n, 2)
    assert y.shape == (n, 1)
    assert x.dtype == jnp.float32
    assert y.dtype == jnp.float32
    labels = np.asarray(y[:, 0])
    assert set(np.unique(labels)) <= {0.0, 1.0}
    assert (labels == 0.0).sum() == n // 2
    assert (labels == 1.0).sum() == n - n // 2


@pytest.mark.parametrize("make", [two_moons, circles])
def test_deterministic_given_key(make):
    x1, y1 = make(50, key=jax.random.key(3))
    x2, y2 = make(50, key=jax.random.key(3))
    x3, _ = make(50, key=jax.random.key(4))
    np.testing.assert_array_equal(np.asarray(x1), np.asarray(x2))
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    assert not np.allclose(np.asarray(x1), np.asarray(x3))


@pytest.mark.parametrize("make", [two_moons, circles])
def test_legacy_raw_key_accepted(make):
    x, _ = make(10, key=jax.random.PRNGKey(0))
    assert x.shape == (10, 2)


@pytest.mark.parametrize("make", [two_moons, circles])
def test_float64(make, x64_on):
    x, y = make(10, key=KEY, dtype=jnp.float64)
    assert x.dtype == jnp.float64
    assert y.dtype == jnp.float64


def test_two_moons_points_lie_on_their_half_circles_without_noise():
    x, y = two_moons(201, key=KEY, noise=0.0)
    x = np.asarray(x, np.float64)
    outer, inner = x[np.asarray(y[:, 0]) == 0.0], x[np.asarray(y[:, 0]) == 1.0]
    # Outer moon: upper half of the unit circle about (0, 0).
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0, atol=1e-6)
    assert (outer[:, 1] >= -1e-6).all()
    # Inner moon: lower half of the unit circle about (1, 0.5).
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1.0, inner[:, 1] - 0.5), 1.0, atol=1e-6)
    assert (inner[:, 1] <= 0.5 + 1e-6).all()
    # t runs over the whole of [0, pi]: both ends of each moon are present.
    np.testing.assert_allclose(outer[[0, -1]], [[1.0, 0.0], [-1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(inner[[0, -1]], [[0.0, 0.5], [2.0, 0.5]], atol=1e-6)


@pytest.mark.parametrize("factor", [0.2, 0.5, 0.9])
def test_circles_radii_without_noise(factor):
    x, y = circles(101, key=KEY, noise=0.0, factor=factor)
    radius = np.hypot(*np.asarray(x, np.float64).T)
    labels = np.asarray(y[:, 0])
    np.testing.assert_allclose(radius[labels == 0.0], 1.0, atol=1e-6)
    np.testing.assert_allclose(radius[labels == 1.0], factor, atol=1e-6)


@pytest.mark.parametrize("make", [two_moons, circles])
def test_noise_is_gaussian_with_the_asked_standard_deviation(make):
    clean, _ = make(4000, key=KEY, noise=0.0)
    noisy, _ = make(4000, key=KEY, noise=0.1)
    residual = np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)
    assert abs(residual.mean()) < 0.01
    assert residual.std() == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("make", [two_moons, circles])
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"n": 0}, ValueError, r"n=0, expected an int >= 1; pass e\.g\. n=200"),
        ({"n": -3}, ValueError, r"n=-3, expected an int >= 1"),
        ({"n": 2.5}, TypeError, r"n=2\.5, expected an int >= 1 \(got float\)"),
        ({"n": True}, TypeError, r"n=True, expected an int >= 1 \(got bool\)"),
        ({"noise": -0.1}, ValueError, r"noise .* must be >= 0, got noise=-0\.1"),
        ({"noise": math.nan}, ValueError, r"noise must be finite, got noise=nan"),
        ({"noise": "0.1"}, TypeError, r"noise must be a real number, got str"),
        ({"key": 0}, TypeError, r"key is int 0, expected one PRNG key; pass key=jax\.random\.key"),
        ({"dtype": jnp.int32}, TypeError, r"dtype=int32 is not a floating dtype"),
        ({"dtype": "float31"}, TypeError, r"dtype='float31' is not a dtype"),
        ({"dtype": None}, TypeError, r"dtype=None is not a dtype"),
    ],
)
def test_generator_bad_arguments(make, kwargs, error, pattern):
    args = {"n": 10, "key": KEY} | kwargs
    with pytest.raises(error, match=rf"{make.__name__}: {pattern}"):
        make(args.pop("n"), **args)


@pytest.mark.parametrize("make", [two_moons, circles])
def test_key_is_required_and_keyword_only(make):
    with pytest.raises(TypeError, match="key"):
        make(10)
    with pytest.raises(TypeError, match="positional"):
        make(10, KEY)


@pytest.mark.parametrize("factor", [0.0, 1.0, 1.5, -0.2])
def test_circles_factor_outside_open_unit_interval(factor):
    with pytest.raises(ValueError, match=rf"strictly between 0 and 1, got factor={factor}"):
        circles(10, key=KEY, factor=factor)


@pytest.mark.parametrize(
    "call",
    [
        lambda: truth_table("xor", dtype=jnp.float64),
        lambda: two_moons(10, key=KEY, dtype=jnp.float64),
        lambda: circles(10, key=KEY, dtype=jnp.float64),
        lambda: one_hot(np.array([0, 1]), 2, dtype=jnp.float64),
    ],
)
def test_float64_without_x64_says_how_to_enable_it(call, x64_off):
    with pytest.raises(
        ValueError,
        match=re.escape("dtype=float64 was asked for but 64-bit types are disabled")
        + r".*"
        + re.escape('jax.config.update("jax_enable_x64", True)'),
    ):
        call()


# --------------------------------------------------------------------------------------------
# load_csv
# --------------------------------------------------------------------------------------------


def test_load_csv_without_header(tmp_path):
    path = write(tmp_path / "d.csv", "1,2,3\n4,5,6\n")
    x, y = load_csv(path)
    assert x.dtype == jnp.float32
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(x), [[1, 2], [4, 5]])
    np.testing.assert_array_equal(np.asarray(y), [[3], [6]])


@pytest.mark.parametrize("header", [True, None])
def test_load_csv_with_header(tmp_path, header):
    path = write(tmp_path / "d.csv", "a,b,target\n1,2,0\n3,4,1\n")
    x, y = load_csv(str(path), header=header)
    np.testing.assert_array_equal(np.asarray(x), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(np.asarray(y), [[0], [1]])


def test_load_csv_header_true_skips_a_numeric_first_row(tmp_path):
    path = write(tmp_path / "d.csv", "0,1,2\n1,2,3\n")
    x, y = load_csv(path, header=True)
    np.testing.assert_array_equal(np.asarray(x), [[1, 2]])
    np.testing.assert_array_equal(np.asarray(y), [[3]])


def test_load_csv_autodetect_one_non_numeric_cell_is_a_header(tmp_path):
    path = write(tmp_path / "d.csv", "1,2,y\n1,2,3\n")
    x, _ = load_csv(path)
    assert x.shape == (1, 2)


def test_load_csv_n_targets_two(tmp_path):
    path = write(tmp_path / "d.csv", "x1,x2,y1,y2\n1,2,3,4\n5,6,7,8\n9,10,11,12\n")
    x, y = load_csv(path, n_targets=2)
    np.testing.assert_array_equal(np.asarray(x), [[1, 2], [5, 6], [9, 10]])
    np.testing.assert_array_equal(np.asarray(y), [[3, 4], [7, 8], [11, 12]])


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_load_csv_delimiter(tmp_path, delimiter):
    path = write(tmp_path / "d.txt", delimiter.join(["1.5", "-2e3", "0"]) + "\n")
    x, y = load_csv(path, delimiter=delimiter)
    np.testing.assert_array_equal(np.asarray(x), [[1.5, -2000.0]])
    np.testing.assert_array_equal(np.asarray(y), [[0.0]])


def test_load_csv_skips_blank_lines_and_tolerates_spaces_and_bom(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n\r\n 1 , 2\r\n   \r\n3,4\r\n\r\n")
    x, y = load_csv(path)
    np.testing.assert_array_equal(np.asarray(x), [[1], [3]])
    np.testing.assert_array_equal(np.asarray(y), [[2], [4]])


def test_load_csv_float64_keeps_full_precision(tmp_path, x64_on):
    path = write(tmp_path / "d.csv", "0.1,0.30000000000000004\n")
    x, y = load_csv(path, dtype=jnp.float64)
    assert x.dtype == jnp.float64
    assert float(x[0, 0]) == 0.1
    assert float(y[0, 0]) == 0.30000000000000004


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_load_csv_round_trips_finite_matrices(tmp_path_factory, data):
    rows = data.draw(st.integers(1, 6), label="rows")
    cols = data.draw(st.integers(2, 5), label="cols")
    n_targets = data.draw(st.integers(1, cols - 1), label="n_targets")
    cell = st.floats(width=32, allow_nan=False, allow_infinity=False)
    matrix = np.array(
        data.draw(
            st.lists(st.lists(cell, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        ),
        dtype=np.float32,
    )
    header = data.draw(st.sampled_from([None, True, False]), label="header")
    lines = [",".join(repr(float(v)) for v in row) for row in matrix]
    if header is not False:
        lines.insert(0, ",".join(f"c{j}" for j in range(cols)))
    path = tmp_path_factory.mktemp("roundtrip") / "m.csv"
    write(path, "\n".join(lines) + "\n")

    x, y = load_csv(path, n_targets=n_targets, header=header)

    np.testing.assert_array_equal(np.asarray(x), matrix[:, : cols - n_targets])
    np.testing.assert_array_equal(np.asarray(y), matrix[:, cols - n_targets :])


def test_load_csv_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(f"no such file {str(missing)!r}")):
        load_csv(missing)


def test_load_csv_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_csv(tmp_path)


def test_load_csv_not_utf8(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xff\xfe1,2\n")
    with pytest.raises(ValueError, match=r"not UTF-8 text .*save the file as UTF-8"):
        load_csv(path)


def test_load_csv_non_numeric_cell_names_file_line_column_and_text(tmp_path):
    # The blank line still counts: "abc" sits on line 4 of the file.
    path = write(tmp_path / "data.csv", "a,b,c\n1,2,3\n\n4,abc,6\n")
    message = f"{path} line 4, column 2: 'abc' is not a number; every cell after the header"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_csv(path)


def test_load_csv_non_numeric_first_row_with_header_false(tmp_path):
    path = write(tmp_path / "data.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"line 1, column 1: 'a' is not a number.*header=True"):
        load_csv(path, header=False)


def test_load_csv_ragged_row_names_line_found_and_expected(tmp_path):
    path = write(tmp_path / "data.csv", "1,2,3\n4,5,6\n7,8\n")
    with pytest.raises(ValueError, match=r"line 3: found 2 column\(s\), expected 3 as on line 1"):
        load_csv(path)


@pytest.mark.parametrize(("text", "n_targets"), [("1\n2\n", 1), ("1,2\n", 2), ("1;2;3\n", 1)])
def test_load_csv_too_few_columns(tmp_path, text, n_targets):
    path = write(tmp_path / "data.csv", text)
    with pytest.raises(
        ValueError, match=rf"found \d column\(s\), but n_targets={n_targets} needs at least"
    ):
        load_csv(path, n_targets=n_targets)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_load_csv_empty_file(tmp_path, text):
    path = write(tmp_path / "data.csv", text)
    with pytest.raises(ValueError, match=r"no data rows \(the file is empty"):
        load_csv(path)


@pytest.mark.parametrize(
    ("header", "why"), [(None, "auto-detected as a header"), (True, "skipped as header=True")]
)
def test_load_csv_header_only(tmp_path, header, why):
    path = write(tmp_path / "data.csv", "a,b,c\n")
    with pytest.raises(ValueError, match=rf"no data rows; line 1 was {why}"):
        load_csv(path, header=header)


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-Infinity"])
def test_load_csv_nan_or_inf_names_line_and_column(tmp_path, bad):
    path = write(tmp_path / "data.csv", f"x,y\n1,2\n3,{bad}\n")
    with pytest.raises(ValueError, match=rf"line 3, column 2: '{bad}' is NaN or Inf"):
        load_csv(path)


def test_load_csv_value_too_large_for_float32(tmp_path):
    path = write(tmp_path / "data.csv", "1,2\n1e300,3\n")
    with pytest.raises(ValueError, match=r"line 2, column 1: '1e300' does not fit in float32"):
        load_csv(path)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"n_targets": 0}, ValueError, r"n_targets=0, expected an int >= 1"),
        ({"n_targets": 1.0}, TypeError, r"n_targets=1\.0, expected an int >= 1 \(got float\)"),
        ({"header": "yes"}, TypeError, r"header must be True, False or None, got str 'yes'"),
        ({"delimiter": ", "}, ValueError, r"delimiter must be a single character.*', '"),
        ({"delimiter": '"'}, ValueError, r"delimiter must be a single character"),
        ({"dtype": jnp.int32}, TypeError, r"dtype=int32 is not a floating dtype"),
    ],
)
def test_load_csv_bad_arguments(tmp_path, kwargs, error, pattern):
    path = write(tmp_path / "data.csv", "1,2\n")
    with pytest.raises(error, match=rf"load_csv: {pattern}"):
        load_csv(path, **kwargs)


def test_load_csv_path_type():
    with pytest.raises(TypeError, match=r"path must be a str or pathlib\.Path, got int"):
        load_csv(3)


# --------------------------------------------------------------------------------------------
# one_hot
# --------------------------------------------------------------------------------------------


def test_one_hot_values():
    out = one_hot(jnp.array([2, 0, 1, 2]), 3)
    assert out.dtype == jnp.float32
    expected = [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    np.testing.assert_array_equal(np.asarray(out), np.array(expected, np.float32))


def test_one_hot_accepts_lists_and_empty_input():
    np.testing.assert_array_equal(np.asarray(one_hot([1, 0], 2)), [[0, 1], [1, 0]])
    assert one_hot([], 4).shape == (0, 4)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_one_hot_matches_identity_rows(data):
    n_classes = data.draw(st.integers(1, 6), label="n_classes")
    labels = data.draw(st.lists(st.integers(0, n_classes - 1), max_size=12), label="labels")
    out = np.asarray(one_hot(np.array(labels, dtype=np.int32), n_classes))
    np.testing.assert_array_equal(out, np.eye(n_classes, dtype=np.float32)[labels])


def test_one_hot_under_jit():
    out = jax.jit(lambda labels: one_hot(labels, 3))(jnp.array([1, 2]))
    np.testing.assert_array_equal(np.asarray(out), [[0, 1, 0], [0, 0, 1]])


@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        ([0, 3, 1], r"labels\[1\] = 3 is outside \[0, 3\) \(labels span 0\.\.3\)"),
        ([0, -1], r"labels\[1\] = -1 is outside \[0, 3\) \(labels span -1\.\.0\)"),
    ],
)
def test_one_hot_labels_out_of_range(labels, pattern):
    with pytest.raises(ValueError, match=rf"one_hot: {pattern}.*larger n_classes"):
        one_hot(np.array(labels), 3)


@pytest.mark.parametrize(
    ("labels", "n_classes", "error", "pattern"),
    [
        (np.array([0.0, 1.0]), 2, TypeError, r"integer class ids, got dtype float"),
        (np.array([True, False]), 2, TypeError, r"integer class ids, got dtype bool"),
        (np.zeros((2, 1), np.int32), 2, ValueError, r"1-D with shape \(n,\), got shape \(2, 1\)"),
        (np.int32(1), 2, ValueError, r"1-D with shape \(n,\), got shape \(\)"),
        (np.array([0]), 0, ValueError, r"n_classes=0, expected an int >= 1"),
        (np.array([0]), 2.0, TypeError, r"n_classes=2\.0, expected an int >= 1 \(got float\)"),
    ],
)
def test_one_hot_bad_arguments(labels, n_classes, error, pattern):
    with pytest.raises(error, match=rf"one_hot: .*{pattern}"):
        one_hot(labels, n_classes)
