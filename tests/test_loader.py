"""Tests for audit.loader: every way a --grad spec can be right or wrong, by the message, and
the specs of --vjp, --jvp, --backward and --inputs."""

import sys
import textwrap

import pytest

from audit.loader import (
    LoadError,
    UserCodeError,
    file_module_name,
    guard,
    load_backward,
    load_grad_fn,
    load_inputs,
    load_rule,
)

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
    assert load_grad_fn("jaxbp:seed_grads").__wrapped__ is __import__("jaxbp").seed_grads


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
    path = write(tmp_path / "audit_loader_broken_mod.py", "import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LoadError) as e:
        load_grad_fn("audit_loader_broken_mod:grads")
    # the module was found: what it imports is missing, and the message says so
    assert str(e.value) == (
        "importing module 'audit_loader_broken_mod' failed: ModuleNotFoundError: No module "
        f"named 'no_such_dependency_xyz' (at {path}, line 1, in <module>); install what it "
        "imports, or fix the import"
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("raise KeyError('k')", "failed: KeyError: 'k'"),
        ("import sys\nsys.exit(3)", "called sys.exit(3)"),
        ("import sys\nsys.exit()", "called sys.exit(None)"),
    ],
)
def test_module_that_raises_or_exits_on_import(body, said, tmp_path, monkeypatch):
    name = f"audit_loader_exit_mod_{abs(hash(body))}"
    path = write(tmp_path / f"{name}.py", body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    line = body.count("\n") + 1
    with pytest.raises(LoadError) as e:
        load_grad_fn(f"{name}:grads")
    assert str(e.value) == (
        f"importing module {name!r} {said} (at {path}, line {line}, in <module>); fix the "
        "module so that importing it succeeds"
    )


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
    assert file_module_name(str(path)) not in sys.modules  # nothing half-imported is left behind


def test_file_that_raises_on_import(tmp_path):
    path = write(tmp_path / "boom.py", "raise RuntimeError('boom at import')\n")
    with pytest.raises(LoadError) as e:
        load_grad_fn(f"{path}:grads")
    assert str(e.value) == (
        f"running '{path}' failed: RuntimeError: boom at import (at {path}, line 1, in "
        "<module>); fix the file so that importing it succeeds"
    )


def test_file_that_exits_on_import(tmp_path):
    path = write(tmp_path / "exits.py", "import sys\n\nsys.exit(3)\n")
    with pytest.raises(LoadError) as e:
        load_grad_fn(f"{path}:grads")
    assert str(e.value) == (
        f"running '{path}' called sys.exit(3) (at {path}, line 3, in <module>); fix the file "
        "so that importing it succeeds"
    )
    assert file_module_name(str(path)) not in sys.modules


RAISING = """
import sys
import jax.numpy as jnp
import jaxbp

def grads(params, x, y):
    return helper(params)

def helper(params):
    raise RuntimeError("deep inside")

def exits(params, x, y):
    sys.exit("bye")

def not_traceable(params, x, y):
    if float(x[0, 0]) > 1e9:  # a Python branch on a value: JAX cannot trace it
        return None
    return jaxbp.seed_grads(params, x, y)

def with_factors(params, x, y):
    return jaxbp.seed_grads(params, x, y)

def factors(params, x, yt):
    return {"dE/dA3": jnp.log(-1.0) + [][0]}

with_factors.factors = factors
with_factors.note = "kept"
"""


@pytest.fixture
def raising_file(tmp_path):
    return write(tmp_path / "raising.py", RAISING)


def call_every_way(fn, *args):
    """``fn`` called plainly and under jit, vmap and eval_shape; the exceptions it raised."""
    import jax

    p, x, y = args
    ways = [
        fn,
        jax.jit(fn),
        lambda p, x, y: jax.vmap(fn, in_axes=(None, 0, 0))(p, x[None], y[None]),
        lambda p, x, y: jax.eval_shape(fn, p, x, y),
    ]
    raised = []
    for way in ways:
        with pytest.raises(BaseException) as e:
            way(p, x, y)
        raised.append(e.value)
    return raised


def test_any_exception_of_the_users_function_is_a_user_code_error(raising_file):
    import jaxbp

    spec = f"{raising_file}:grads"
    for e in call_every_way(load_grad_fn(spec), *jaxbp.seed_example()):
        assert type(e) is UserCodeError
        assert isinstance(e.error, RuntimeError) and e.function == spec
        assert str(e) == (
            f"{spec} raised RuntimeError: deep inside (at {raising_file}, line 10, in helper); "
            "fix the function, or call it on its own to debug it"
        )


def test_sys_exit_in_the_users_function_is_a_user_code_error(raising_file):
    import jaxbp

    for e in call_every_way(load_grad_fn(f"{raising_file}:exits"), *jaxbp.seed_example()):
        assert type(e) is UserCodeError and isinstance(e.error, SystemExit)
        assert str(e).startswith(f"{raising_file}:exits called sys.exit('bye') (at ")


def test_user_code_error_is_not_a_value_error():
    # so that code turning bad input into ValueError lets it through with its own message
    assert not issubclass(UserCodeError, (ValueError, TypeError))


def test_jax_not_traceable_signals_pass_through(raising_file):
    import jax

    import jaxbp

    fn = load_grad_fn(f"{raising_file}:not_traceable")
    p, x, y = jaxbp.seed_example()
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(fn)(p, x, y)
    assert jax.tree.structure(fn(p, x, y)) == jax.tree.structure(p)  # plain call works


def test_guard_keeps_name_attributes_and_guards_factors(raising_file):
    import jax

    import jaxbp

    spec = f"{raising_file}:with_factors"
    fn = load_grad_fn(spec)
    assert fn.__name__ == "with_factors" and fn.note == "kept"
    assert fn.factors.__name__ == "factors"
    p, x, y = jaxbp.seed_example()
    with pytest.raises(UserCodeError) as e:
        jax.jit(fn.factors)(p, x[0], y[0])
    assert str(e.value).startswith(
        f"{spec}.factors raised IndexError: list index out of range (at {raising_file}, line 24"
    )


def test_guard_keeps_a_keyboard_interrupt():
    def stopped(params, x, y):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guard(stopped, "stopped")(None, None, None)


def test_load_error_is_a_value_error():
    assert issubclass(LoadError, ValueError)


RULES = """
import jax
import jax.numpy as jnp

RUNS = []
RUNS.append(1)  # how many times the file was run


@jax.custom_vjp
def cube(x):
    return x**3


cube.defvjp(lambda x: (x**3, x), lambda x, g: (g * 3 * x**2,))


@jax.custom_vjp
def no_rule(x):
    return x


@jax.custom_jvp
def fails(x):
    return jnp.sin(x)


@fails.defjvp
def _fails_jvp(primals, tangents):
    raise ValueError("jvp broke")


def inputs():
    return [jnp.ones(3)]


def needs_n(n):
    return (jnp.ones(n),)


point = (jnp.ones(2),)
array = jnp.ones(2)
"""


@pytest.fixture
def rules_file(tmp_path):
    return write(tmp_path / "rules.py", RULES)


def test_load_rule_rebuilds_the_rule_with_the_same_derivative(rules_file):
    import jax
    import jax.numpy as jnp

    cube = load_rule(f"{rules_file}:cube", "vjp")
    assert isinstance(cube, jax.custom_vjp) and cube.__name__ == "cube"
    x = jnp.array([1.0, 2.0])
    # 3 x^2, by hand
    assert jax.vjp(cube, x)[1](jnp.ones(2))[0].tolist() == [3.0, 12.0]


def test_load_rule_errors_say_what_the_name_is(rules_file):
    with pytest.raises(LoadError, match=r"rules.py:no_rule is a jax.custom_vjp with no rule"):
        load_rule(f"{rules_file}:no_rule", "vjp")
    with pytest.raises(LoadError, match=r"is a jax.custom_vjp function, not a jax.custom_jvp one"):
        load_rule(f"{rules_file}:cube", "jvp")
    with pytest.raises(LoadError, match=r"rules.py:inputs is a plain function, not a jax.cus"):
        load_rule(f"{rules_file}:inputs", "vjp")
    with pytest.raises(LoadError, match=r"rules.py:array is an ArrayImpl, not a jax.custom"):
        load_rule(f"{rules_file}:array", "jvp")


def test_a_failing_rule_is_a_user_code_error_naming_it(rules_file):
    import jax
    import jax.numpy as jnp

    fails = load_rule(f"{rules_file}:fails", "jvp")
    with pytest.raises(UserCodeError, match=r"rules.py:fails \(its jvp rule\) raised ValueError"):
        jax.jvp(fails, (jnp.ones(2),), (jnp.ones(2),))


def test_load_backward_needs_two_callables(rules_file):
    forward, backward = load_backward(f"{rules_file}:inputs,needs_n")
    assert (forward.__name__, backward.__name__) == ("inputs", "needs_n")
    with pytest.raises(LoadError, match=r"'inputs' in .* is not two function names"):
        load_backward(f"{rules_file}:inputs")
    with pytest.raises(LoadError, match=r"point in .* is not callable: it is a tuple"):
        load_backward(f"{rules_file}:inputs,point")


def test_load_inputs_calls_a_function_or_takes_a_tuple(rules_file):
    modules = {}
    called = load_inputs(f"{rules_file}:inputs", modules=modules)
    assert isinstance(called, tuple) and len(called) == 1 and called[0].shape == (3,)
    assert load_inputs(f"{rules_file}:point", modules=modules)[0].shape == (2,)
    [module] = modules.values()
    assert module.RUNS == [1]  # one file named twice runs once
    with pytest.raises(LoadError, match=r"rules.py:array is an ArrayImpl, expected a tuple"):
        load_inputs(f"{rules_file}:array")
    with pytest.raises(LoadError, match=r"rules.py:needs_n cannot be called with no arguments"):
        load_inputs(f"{rules_file}:needs_n")
