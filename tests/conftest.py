"""Test-wide settings: 64-bit references and no silent rank promotion.

The suite compiles tens of thousands of programs in one process; each maps its code into
memory, and past the kernel's limit on mappings (``vm.max_map_count``, 65530 by default) the
next compilation aborts the process. After any test that leaves the process over a third of
that limit, JAX's compilation caches are cleared.
"""

import jax
import pytest

from audit.budget import clear_if_crowded

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _room_for_compiled_programs():
    yield
    clear_if_crowded(share=1 / 3)
