"""jaxbp: backpropagation written by hand, as pure JAX functions, checked against autodiff.

Parameters are a plain list of ``{"W": (n_out, n_in), "b": (n_out,)}`` layers; every
function is pure and takes explicit PRNG keys.
"""

from jaxbp.activations import ACTIVATIONS, Activation
from jaxbp.backprop import Backprop, closed_form, closed_form_grads
from jaxbp.data import circles, load_csv, one_hot, truth_table, two_moons
from jaxbp.losses import LOSSES, check_output_units, resolve_output
from jaxbp.network import batch_loss, forward
from jaxbp.params import Params, from_named, init, param_names, seed_params, sizes_of, to_named
from jaxbp.reference import autodiff, autodiff_deltas, autodiff_grads, seed_factors_autodiff
from jaxbp.seed import seed_example, seed_factors, seed_forward, seed_grads, seed_grads_example
from jaxbp.sharding import data_mesh, replicate, shard_batch, shard_local_batch
from jaxbp.train import GRADS, FitResult, fit, gradient_descent

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "GRADS",
    "LOSSES",
    "Activation",
    "Backprop",
    "FitResult",
    "Params",
    "autodiff",
    "autodiff_deltas",
    "autodiff_grads",
    "batch_loss",
    "check_output_units",
    "circles",
    "closed_form",
    "closed_form_grads",
    "data_mesh",
    "fit",
    "forward",
    "from_named",
    "gradient_descent",
    "init",
    "load_csv",
    "one_hot",
    "param_names",
    "replicate",
    "resolve_output",
    "seed_example",
    "seed_factors",
    "seed_factors_autodiff",
    "seed_forward",
    "seed_grads",
    "seed_grads_example",
    "seed_params",
    "shard_batch",
    "shard_local_batch",
    "sizes_of",
    "to_named",
    "truth_table",
    "two_moons",
]
