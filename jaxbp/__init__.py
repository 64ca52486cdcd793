"""jaxbp: backpropagation written by hand, as pure JAX functions, checked against autodiff.

Parameters are a plain list of ``{"W": (n_out, n_in), "b": (n_out,)}`` layers; every
function is pure and takes explicit PRNG keys.
"""

from jaxbp.activations import ACTIVATIONS, Activation, get_activation
from jaxbp.backprop import closed_form, closed_form_grads
from jaxbp.core import (
    OUTPUT_ACTIVATIONS,
    Backprop,
    OutputSpec,
    backprop_batch,
    bind_choices,
    check_output_units,
    deltas_example,
    forward_example,
    grads_from_deltas,
    hidden_deltas,
    mean_loss,
    per_example_loss,
    resolve_output,
)
from jaxbp.data import TRUTH_TABLES, circles, load_csv, one_hot, truth_table, two_moons
from jaxbp.distributed import DISTRIBUTED_TIMEOUT, initialize_distributed, parse_coordinator
from jaxbp.losses import LOSSES, Loss
from jaxbp.names import NameSequence
from jaxbp.network import batch_loss, forward
from jaxbp.params import (
    ParamNames,
    Params,
    from_named,
    init,
    param_names,
    seed_params,
    sizes_of,
    target_units,
    to_named,
)
from jaxbp.reference import (
    autodiff,
    autodiff_deltas,
    autodiff_grads,
    deltas_by_jax_grad,
    seed_factors_autodiff,
)
from jaxbp.seed import (
    seed_example,
    seed_factors,
    seed_forward,
    seed_grads,
    seed_grads_example,
    seed_weights,
    sigma,
)
from jaxbp.sharding import (
    DATA,
    check_divisible,
    data_mesh,
    data_size,
    local_rows,
    replicate,
    shard_batch,
    shard_local_batch,
)
from jaxbp.taps import mlp_deltas_backward, mlp_loss_tapped, seed_backward, seed_loss_tapped
from jaxbp.train import GRADS, FitResult, compiled_loops, fit, gradient_descent

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "DATA",
    "DISTRIBUTED_TIMEOUT",
    "GRADS",
    "LOSSES",
    "OUTPUT_ACTIVATIONS",
    "TRUTH_TABLES",
    "Activation",
    "Backprop",
    "FitResult",
    "Loss",
    "NameSequence",
    "OutputSpec",
    "ParamNames",
    "Params",
    "autodiff",
    "autodiff_deltas",
    "autodiff_grads",
    "backprop_batch",
    "batch_loss",
    "bind_choices",
    "check_divisible",
    "check_output_units",
    "circles",
    "closed_form",
    "closed_form_grads",
    "compiled_loops",
    "data_mesh",
    "data_size",
    "deltas_by_jax_grad",
    "deltas_example",
    "fit",
    "forward",
    "forward_example",
    "from_named",
    "get_activation",
    "gradient_descent",
    "grads_from_deltas",
    "hidden_deltas",
    "init",
    "initialize_distributed",
    "load_csv",
    "local_rows",
    "mean_loss",
    "mlp_deltas_backward",
    "mlp_loss_tapped",
    "one_hot",
    "param_names",
    "parse_coordinator",
    "per_example_loss",
    "replicate",
    "resolve_output",
    "seed_backward",
    "seed_example",
    "seed_factors",
    "seed_factors_autodiff",
    "seed_forward",
    "seed_grads",
    "seed_grads_example",
    "seed_loss_tapped",
    "seed_params",
    "seed_weights",
    "shard_batch",
    "shard_local_batch",
    "sigma",
    "sizes_of",
    "target_units",
    "to_named",
    "truth_table",
    "two_moons",
]
