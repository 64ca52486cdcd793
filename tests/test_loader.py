"""Tests for audit.loader: every way a --grad spec can be right or wrong, by the message."""

import sys
import textwrap

import pytest

from audit.loader import LoadError, _module_name, load_grad_fn

GOOD = """
import jaxbp

def grads(params, x, y):
    return jaxbp.closed_form_grads(params, x, y)

def with_options(params, x, y, *, scale=1.0):
    return grads(params, x, y)

def takes_two(params, x):
    return params

def variadic(*args):
    return args[0]

class Model:
    @staticmethod
    def grads(params, x, y):
        return params

not_a_function = 3
_private = grads
"""


def write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def good_file(tmp_path):
    return write(tmp_path / "my_grads.py", GOOD)


def test_file_spec(good_file):
    fn = load_grad_fn(f"{good_file}:grads")
    assert fn.__name__ == "grads"
    assert fn.__module__ in sys.modules


@pytest.mark.parametrize("name", ["with_options", "variadic", "Model.grads"])
def test_file_spec_signatures_that_accept_three_positionals(good_file, name):
    assert callable(load_grad_fn(f"{good_file}:{name}"))


def test_module_spec(tmp_path, monkeypatch):
    write(tmp_path / "audit_loader_test_mod.py", GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = load_grad_fn("audit_loader_test_mod:grads")
    assert fn.__module__ == "audit_loader_test_mod"
    assert load_grad_fn("jaxbp:seed_grads") is __import__("jaxbp").seed_grads


def test_same_file_name_in_two_places_gives_two_modules(tmp_path):
    fns = []
    for place in ("a", "b"):
        (tmp_path / place).mkdir()
        path = write(tmp_path / place / "grads.py", f"def f(p, x, y):\n    return {place!r}\n")
        fns.append(load_grad_fn(f"{path}:f"))
    assert [f(0, 0, 0) for f in fns] == ["a", "b"]
    assert fns[0].__module__ != fns[1].__module__


def test_relative_path(good_file, monkeypatch):
    monkeypatch.chdir(good_file.parent)
    assert callable(load_grad_fn("my_grads.py:grads"))
    assert callable(load_grad_fn("./my_grads.py:grads"))


@pytest.mark.parametrize("spec", ["my_grads.py", "grads", "", ":grads", "my_grads.py:"])
def test_no_colon_or_empty_part(spec):
    with pytest.raises(LoadError, match="expected MODULE:FUNCTION"):
        load_grad_fn(spec)


def test_not_a_name(good_file):
    with pytest.raises(LoadError, match=r"'grads-2' .* is not a function name"):
        load_grad_fn(f"{good_file}:grads-2")


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "grads.py"
    with pytest.raises(LoadError, match=f"no such file '{missing}'"):
        load_grad_fn(f"{missing}:grads")


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "pkg.py").mkdir()
    with pytest.raises(LoadError, match="is a directory"):
        load_grad_fn(f"{tmp_path / 'pkg.py'}:grads")


def test_module_not_importable():
    with pytest.raises(
        LoadError, match="cannot import module 'no_such_module_xyz': No module named"
    ):
        load_grad_fn("no_such_module_xyz:grads")


def test_module_whose_import_fails(tmp_path, monkeypatch):
    write(tmp_path / "audit_loader_broken_mod.py", "import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        LoadError, match=r"audit_loader_broken_mod.*No module named 'no_such_dependency_xyz'"
    ):
        load_grad_fn("audit_loader_broken_mod:grads")


def test_missing_attribute_lists_callables(good_file):
    with pytest.raises(LoadError) as e:
        load_grad_fn(f"{good_file}:grad")
    msg = str(e.value)
    assert "has no attribute 'grad'" in msg
    assert "grads, takes_two, variadic, with_options" in msg
    assert "_private" not in msg and "not_a_function" not in msg and "Model" not in msg


def test_missing_attribute_in_a_file_without_functions(tmp_path):
    path = write(tmp_path / "empty.py", "X = 1\n")
    with pytest.raises(LoadError, match="it defines no callables"):
        load_grad_fn(f"{path}:grads")


def test_missing_nested_attribute(good_file):
    with pytest.raises(LoadError, match=r"Model in .* has no attribute 'grad'"):
        load_grad_fn(f"{good_file}:Model.grad")


def test_not_callable(good_file):
    with pytest.raises(LoadError, match=r"not_a_function in .* is not callable: it is an int"):
        load_grad_fn(f"{good_file}:not_a_function")


def test_wrong_signature(good_file):
    with pytest.raises(LoadError) as e:
        load_grad_fn(f"{good_file}:takes_two")
    assert "takes_two" in str(e.value)
    assert "(params, x)" in str(e.value)
    assert "fn(params, x, y)" in str(e.value)


def test_keyword_only_arguments_are_a_wrong_signature(tmp_path):
    path = write(tmp_path / "kw.py", "def g(params, *, x, y):\n    return params\n")
    with pytest.raises(LoadError, match=r"signature \(params, \*, x, y\)"):
        load_grad_fn(f"{path}:g")


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path / "bad.py", "import jax\n\ndef grads(params, x, y)\n    return params\n")
    with pytest.raises(LoadError, match=r"syntax error in '.*bad\.py' at line 3"):
        load_grad_fn(f"{path}:grads")
    assert _module_name(str(path)) not in sys.modules  # nothing half-imported is left behind


def test_file_that_raises_on_import(tmp_path):
    path = write(tmp_path / "boom.py", "raise RuntimeError('boom at import')\n")
    with pytest.raises(LoadError, match="RuntimeError: boom at import"):
        load_grad_fn(f"{path}:grads")


def test_load_error_is_a_value_error():
    assert issubclass(LoadError, ValueError)
