"""audit.result: numbers as report.json writes them."""

import math

import numpy as np

from audit.result import json_number, json_numbers


def test_an_array_of_numbers_reads_as_each_number_does():
    values = np.array([0.5, np.nan, -np.inf, 1e-30, np.inf, -0.0, 3.25], np.float32)
    out = json_numbers(values)
    assert out == [0.5, "nan", "-inf", float(np.float32(1e-30)), "inf", -0.0, 3.25]
    assert out == [json_number(v) for v in values]
    assert all(type(v) is float for v in out if not isinstance(v, str))
    assert math.copysign(1, out[5]) == -1  # the sign of zero kept
    assert json_numbers([]) == []
