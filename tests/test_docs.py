"""Every docstring example in jaxbp and audit runs, and prints what it says it prints."""

import doctest
import importlib
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
import jaxbp


def _modules() -> list[str]:
    names = []
    for pkg in (jaxbp, audit):
        names.append(pkg.__name__)
        names += [
            f"{pkg.__name__}.{m.name}"
            for m in pkgutil.iter_modules(pkg.__path__)
            if m.name != "__main__"
        ]
    return names


MODULES = _modules()


def test_every_module_is_collected():
    assert {
        "jaxbp.core",
        "jaxbp.network",
        "audit.engine",
        "audit.tiers",
        "audit.report_json",
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    globs = dict(jax=jax, jnp=jnp, np=np, jaxbp=jaxbp, audit=audit)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=vars(module) | globs):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
    skipped = [
        f"{t.name}: {e.source.strip()}"
        for t in finder.find(module, name, globs=vars(module) | globs)
        for e in t.examples
        if e.options.get(doctest.SKIP)
    ]
    assert skipped == [], f"examples that never run: {skipped}"


def test_every_public_name_of_a_jaxbp_module_is_exported_by_the_package():
    # one tier of public names: what a module lists in __all__, ``import jaxbp`` offers too
    for m in pkgutil.iter_modules(jaxbp.__path__):
        module = importlib.import_module(f"jaxbp.{m.name}")
        for name in getattr(module, "__all__", []):
            assert name in jaxbp.__all__, f"jaxbp.{m.name}.{name} is not in jaxbp.__all__"
            assert getattr(jaxbp, name) is getattr(module, name)
    assert sorted(jaxbp.__all__) == sorted(set(jaxbp.__all__))
