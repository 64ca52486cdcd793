"""JAX's persistent compilation cache for ``jaxbp-audit``: a second run loads, not compiles.

The CLI turns it on by default in the user's cache folder, ``$XDG_CACHE_HOME/jaxbp/jax``
(``~/.cache/jaxbp/jax`` when ``XDG_CACHE_HOME`` is unset or not an absolute path), and off with
``--no-cache`` or ``JAXBP_NO_CACHE=1``. A cache folder set for JAX itself
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is used as it is. A folder that cannot be
written leaves the cache off for that run; the run itself goes on. JAX writes one small file
per compiled program (under a megabyte for the default run) and never deletes them: remove
the folder to reclaim the space. Beside it, ``programs`` (:func:`programs_dir`) keeps the
compiled programs themselves (:mod:`audit.program_cache`), so a second run does not trace
them either; the same switch turns both off.

Only a command-line run uses it: the settings are process-wide, so ``audit.cli.main`` called
from Python with a list of arguments leaves the caller's JAX configuration alone.

Example:
    >>> cache_dir({"XDG_CACHE_HOME": "/var/cache/me"})
    PosixPath('/var/cache/me/jaxbp/jax')
    >>> disabled_by_env({"JAXBP_NO_CACHE": "1"}), disabled_by_env({"JAXBP_NO_CACHE": "0"})
    (True, False)

    The CLI then calls ``enable(cache_dir())``, which returns None when the cache is on.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "DISABLE_VAR",
    "cache_dir",
    "disable",
    "disabled_by_env",
    "enable",
    "programs_dir",
    "unwritable",
]

DISABLE_VAR = "JAXBP_NO_CACHE"


def disabled_by_env(env: Mapping[str, str] = os.environ) -> bool:
    """``JAXBP_NO_CACHE`` is set to anything but empty or ``0``."""
    return env.get(DISABLE_VAR, "").strip() not in ("", "0")


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/jaxbp/jax``, or ``~/.cache/jaxbp/jax``.

    The XDG base directory rules ignore a relative ``XDG_CACHE_HOME``, and so does this.
    """
    base = env.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path(os.path.expanduser("~")) / ".cache"
    return root / "jaxbp" / "jax"


def programs_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``programs`` beside :func:`cache_dir`: the compiled programs :mod:`audit.program_cache`
    keeps, so that a later run neither compiles nor traces them."""
    return cache_dir(env).parent / "programs"


def unwritable(path: Path) -> str | None:
    """None when ``path`` exists (or could be made) and takes new files; else why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return None


def enable(path: Path) -> str | None:
    """Point JAX's persistent compilation cache at ``path``, for every program.

    Call before the first compilation: JAX decides once per process whether to use it. A
    cache folder already configured for JAX wins over ``path``, and its settings are left as
    they are. Errors JAX meets reading or writing an entry later (a full disk) cost a
    compilation, not the run, and are not printed.

    Returns:
      None when the cache is on; otherwise why it stays off (the folder cannot be written).
    """
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own JAX settings, left as they are
        return None
    problem = unwritable(path)
    if problem is not None:
        return f"cannot write to {path} ({problem})"
    jax.config.update("jax_compilation_cache_dir", str(path))
    # every program, however small or quick to compile: the audit's are many and small
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    warnings.filterwarnings(
        "ignore", message=r"Error (reading|writing) persistent compilation cache entry"
    )
    return None


def disable() -> None:
    """No persistent compilation cache in this process, even one configured for JAX itself."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
