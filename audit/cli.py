"""``jaxbp-audit``: audit handwritten MLP gradients against jax.grad from the command line,
or a custom derivative rule or a hand-written backward pass against autodiff.

Exit status: 0 when every weight and factor agrees, 1 when something disagrees, 2 for a
usage or input error or a failure of the audited code (one line on stderr, no traceback),
130 when interrupted (Ctrl-C; the previous report is then left as it was).

Example:
    $ jaxbp-audit                                  # the note's 2-2-1 formulas on XOR
    $ jaxbp-audit --grad closed_form --sizes 2,8,1 --activation tanh --data moons
    $ jaxbp-audit --grad my_backprop.py:grads --no-report
    $ jaxbp-audit --vjp my_ops.py:softplus --inputs my_ops.py:inputs
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from audit import cli_checks, distributed
from audit.engine import GRAD_CHOICES
from jaxbp.activations import ACTIVATIONS
from jaxbp.core import OUTPUT_ACTIVATIONS
from jaxbp.data import TRUTH_TABLES
from jaxbp.losses import LOSSES

__all__ = ["build_parser", "main"]

PROG = "jaxbp-audit"
GENERATED = ("moons", "circles")
GENERATED_POINTS = 200

_EPILOG = f"""\
--grad takes seed (the note's formulas, 2-2-1 sigmoid with mse only), closed_form (the delta
rule for any sizes), MODULE:FUNCTION or path/to/file.py:FUNCTION for your own
grad_fn(params, x, y) -> grads shaped like params.

--data takes xor, and, or (the four rows of the truth table), moons, circles (200 points drawn
with --seed) or a CSV file whose last n_out columns are the targets (n_out: last of --sizes).

Compiled programs are kept in $XDG_CACHE_HOME/jaxbp/jax (default ~/.cache/jaxbp/jax), so a
second run loads them instead of compiling again; --no-cache or JAXBP_NO_CACHE=1 turns this
off. Delete that folder to reclaim its space.

{cli_checks.EPILOG}
exit status: 0 all gradients agree with jax.grad (or autodiff), 1 some disagree, 2 usage or
input error, or an exception in your code (one line on stderr; JAXBP_DEBUG=1 shows the whole
traceback as well), 130 interrupted (the previous report is kept whole).

examples:
  jaxbp-audit
  jaxbp-audit --grad closed_form --sizes 2,8,1 --activation tanh --data moons
  jaxbp-audit --grad my_backprop.py:grads --steps 0 --no-report
  jaxbp-audit --grad closed_form --sizes 2,64,64,1 --points 4096 --devices 8
  jaxbp-audit --vjp my_ops.py:layer_norm --inputs my_ops.py:inputs
  jaxbp-audit --backward my_mlp.py:forward,backward --inputs my_mlp.py:inputs
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format the rest of the CLI uses."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of layer widths; expected at least two positive integers "
            "separated by commas, input width first, e.g. 2,2,1"
        )
    return sizes


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small; expected at least {minimum}")
        return value

    parse.__name__ = "int"
    return parse


def _bytes(text: str) -> int:
    from audit.budget import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_bytes.__name__ = "size"


def _seed(text: str) -> int:
    from jaxbp.checks import SEED_MAX, SEED_MIN

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not SEED_MIN <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(
            f"{value} is out of range; jax.random.key takes a whole number from {SEED_MIN} to "
            f"{SEED_MAX} (a 64-bit integer), e.g. --seed 0"
        )
    return value


def _float(*, positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            need = "a finite number > 0" if positive else "a finite number >= 0"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {need}")
        return value

    parse.__name__ = "float"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxbp-audit`` argument parser."""
    p = _Parser(
        prog=PROG,
        description="Check handwritten MLP gradients against jax.grad, weight by weight, at "
        "random\npoints and along a training run, or a custom derivative rule or a hand-written\n"
        "backward pass against autodiff, element by element; write a report.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    net = p.add_argument_group("network")
    net.add_argument(
        "--sizes", type=_sizes, default=(2, 2, 1), metavar="N0,N1,...",
        help="layer widths, input first (default 2,2,1)",
    )  # fmt: skip
    net.add_argument(
        "--activation", choices=tuple(ACTIVATIONS), default="sigmoid",
        help="hidden activation (default sigmoid)",
    )  # fmt: skip
    net.add_argument(
        "--loss", choices=tuple(LOSSES), default="mse",
        help="loss (default mse: E = 1/2 (A - y)^2)",
    )  # fmt: skip
    net.add_argument(
        "--output-activation", choices=OUTPUT_ACTIVATIONS,
        default=None,
        help="output activation (default: the hidden one for mse, sigmoid for bce, softmax "
        "for softmax_ce)",
    )  # fmt: skip
    net.add_argument(
        "--grad", default="seed", metavar="SPEC",
        help=f"gradients to audit: {', '.join(GRAD_CHOICES)}, MODULE:FUNCTION or path.py:FUNCTION "
        "(default seed)",
    )  # fmt: skip

    cli_checks.add_options(p)

    run = p.add_argument_group("audit")
    run.add_argument(
        "--points", type=_int_at_least(1), default=64, metavar="N",
        help="random (params, x, y) draws to audit at, or points around --inputs (default 64)",
    )  # fmt: skip
    run.add_argument(
        "--seed", type=_seed, default=0, help="seeds every random draw (default 0)"
    )  # fmt: skip
    run.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32",
        help="dtype of the audited params and data; references run in float64 (default float32)",
    )  # fmt: skip
    run.add_argument(
        "--steps", type=_int_at_least(0), default=5000, metavar="N",
        help="gradient-descent steps to train and audit along; 0 for none (default 5000)",
    )  # fmt: skip
    run.add_argument(
        "--lr", type=_float(positive=True), default=2.0, metavar="ETA",
        help="learning rate (default 2.0)",
    )  # fmt: skip
    run.add_argument(
        "--data", default="xor", metavar="NAME|PATH.csv",
        help=f"{', '.join(TRUTH_TABLES + GENERATED)} or a CSV file (default xor)",
    )  # fmt: skip
    run.add_argument(
        "--rtol", type=_float(positive=False), default=None,
        help="relative tolerance (default: by dtype)",
    )  # fmt: skip
    run.add_argument(
        "--atol", type=_float(positive=False), default=None,
        help="absolute tolerance (default: by dtype)",
    )  # fmt: skip
    run.add_argument(
        "--no-fd", dest="fd", action="store_false",
        help="skip the finite-difference column",
    )  # fmt: skip
    run.add_argument(
        "--devices", type=_int_at_least(1), default=1, metavar="N",
        help="split the audit points over the first N devices JAX sees (default 1)",
    )  # fmt: skip
    run.add_argument(
        "--memory", type=_bytes, default=None, metavar="SIZE",
        help="memory one compiled call may use, such as 4GiB or 500MB: the points are "
        "evaluated in calls of as many as fit (default half the free memory)",
    )  # fmt: skip
    run.add_argument(
        "--no-cache", dest="cache", action="store_false",
        help="neither read nor fill the compilation cache in $XDG_CACHE_HOME/jaxbp/jax "
        "(default ~/.cache/jaxbp/jax), which spares a second run most compiling; "
        "JAXBP_NO_CACHE=1 does the same",
    )  # fmt: skip

    distributed.add_options(p)

    out = p.add_argument_group("output")
    out.add_argument(
        "--out", default="audit-report", metavar="DIR",
        help="report directory, replaced as a whole (default audit-report)",
    )  # fmt: skip
    out.add_argument(
        "--no-report", dest="report", action="store_false",
        help="print the table only, write no files",
    )  # fmt: skip
    out.add_argument(
        "--quiet", action="store_true", help="print only the final verdict line"
    )  # fmt: skip
    out.add_argument(
        "--max-rows", type=_int_at_least(1), default=None, metavar="N",
        help="show at most N weight rows in all: failing ones first, then the worst passing "
        "ones (default: a line per tensor, then at most 4 rows of each, failing ones first)",
    )  # fmt: skip
    return p


def _check_seed(args: argparse.Namespace) -> None:
    if args.grad != "seed":
        return
    wrong = []
    if tuple(args.sizes) != (2, 2, 1):
        wrong.append(f"--sizes {','.join(map(str, args.sizes))}")
    if args.activation != "sigmoid":
        wrong.append(f"--activation {args.activation}")
    if args.loss != "mse":
        wrong.append(f"--loss {args.loss}")
    if args.output_activation not in (None, "sigmoid"):
        wrong.append(f"--output-activation {args.output_activation}")
    if wrong:
        raise ValueError(
            f"--grad seed is the note's 2-2-1 sigmoid network with mse, but got "
            f"{', '.join(wrong)}; use --grad closed_form for other networks"
        )


def _check_output(args: argparse.Namespace) -> None:
    import jaxbp

    spec = jaxbp.resolve_output(args.activation, args.loss, args.output_activation)
    try:
        jaxbp.check_output_units(spec, args.sizes[-1])
    except ValueError:
        sizes = ",".join(map(str, args.sizes))
        two = ",".join(map(str, (*args.sizes[:-1], 2)))
        raise ValueError(
            f"--loss {args.loss} with --sizes {sizes}: softmax over {args.sizes[-1]} output unit "
            "is 1 whatever its input, so the loss is 0 and every gradient is 0, and a gradient "
            "function returning zeros would pass; give one output unit per class (e.g. "
            f"--sizes {two} with one-hot target columns), or use --loss bce for one yes/no "
            "target"
        ) from None


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _columns(first: int, last: int) -> str:
    return f"column {first}" if first == last else f"columns {first}-{last}"


def _csv_split(args: argparse.Namespace, table: Any) -> tuple[Any, Any]:
    """The CSV's columns split as --sizes says: the last ``n_out`` are the targets."""
    n_cols = table.shape[1]
    n_in, n_out = args.sizes[0], args.sizes[-1]
    if n_in + n_out == n_cols:
        return table[:, :n_in], table[:, n_in:]
    sizes = ",".join(map(str, args.sizes))
    hidden = "".join(f"{h}," for h in args.sizes[1:-1])
    if n_out < n_cols:
        target = "target" if n_out == 1 else "targets"
        read = (
            f"it has {n_cols} columns; the last size, {n_out}, makes "
            f"{_columns(n_cols - n_out + 1, n_cols)} the {target}, which leaves "
            f"{_count(n_cols - n_out, 'input')} ({_columns(1, n_cols - n_out)}), but the first "
            f"size is {n_in}"
        )
    else:
        read = (
            f"it has {n_cols} columns, too few for the {_count(n_out, 'target')} (the last "
            f"size) and {_count(n_in, 'input')} (the first size) that --sizes asks for"
        )
    fits = [
        f"--sizes {i},{hidden}{o} for {_count(i, 'input')} and {_count(o, 'target')}"
        for i, o in ((n_in, n_cols - n_in), (n_cols - n_out, n_out))
        if i >= 1 and o >= 1
    ]
    fix = f"pass {' or '.join(dict.fromkeys(fits))}" if fits else "the file needs 2 columns or more"
    raise ValueError(f"--sizes {sizes} does not fit {args.data}: {read}; {fix}")


def _load_data(args: argparse.Namespace) -> tuple[Any, Any]:
    import jax
    import jax.numpy as jnp

    import jaxbp

    name = args.data
    if name in TRUTH_TABLES:
        return jaxbp.truth_table(name, dtype=args.dtype)
    if name in GENERATED:
        # the engine draws from key(seed) itself; the data gets a stream of its own
        key = jax.random.fold_in(jax.random.key(args.seed), 0xDA7A)
        make = jaxbp.two_moons if name == "moons" else jaxbp.circles
        return make(GENERATED_POINTS, key=key, dtype=args.dtype)
    if not name.lower().endswith(".csv") and not os.path.exists(name):
        raise ValueError(
            f"--data {name!r} is neither a known data set nor an existing file; expected one of "
            f"{', '.join(TRUTH_TABLES + GENERATED)} or the path of a .csv file"
        )
    # read whole, then split by --sizes here, so a mismatch is told in terms of --sizes
    x, y = jaxbp.load_csv(name, n_targets=1, dtype=args.dtype)
    return _csv_split(args, jnp.concatenate([x, y], axis=1))


def _check_widths(args: argparse.Namespace, x: Any, y: Any) -> None:
    sizes = ",".join(map(str, args.sizes))
    if x.shape[1] != args.sizes[0]:
        raise ValueError(
            f"--sizes {sizes} but {args.data} has {x.shape[1]} inputs; the first size must be "
            f"{x.shape[1]}"
        )
    if y.shape[1] != args.sizes[-1]:
        raise ValueError(
            f"--sizes {sizes} but {args.data} has {y.shape[1]} target column(s); the last size "
            f"must be {y.shape[1]}"
        )


def _check_memory(args: argparse.Namespace, n_data: int) -> None:
    from audit.budget import memory_problem

    problem = memory_problem(
        args.sizes, points=args.points, n_data=n_data, steps=args.steps, dtype=args.dtype,
        option="--{name} {value}",
    )  # fmt: skip
    if problem:
        raise ValueError(problem)


def _engine() -> Callable[..., Any]:
    import audit

    return audit.audit_network


def _use_color(stream: Any) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _import_plotting() -> None:
    """Import matplotlib while the audit runs: most of the audit's wall time is XLA
    compiling, which lets other Python threads run, so the plots' import costs no wall time
    of its own. An import that fails here fails again, with its message, when a plot is
    drawn."""
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401
    except Exception:  # reported where the plot is drawn
        pass


def _check_network_options(args: argparse.Namespace) -> None:
    import jax

    import jaxbp

    # references and finite differences run in float64; the audited values keep --dtype.
    # (A rule's audit runs its float64 references itself: the user's code, --inputs
    # included, runs with JAX's settings as in the user's own program.)
    jax.config.update("jax_enable_x64", True)
    jaxbp.resolve_output(args.activation, args.loss, args.output_activation)


def _audit_network(args: argparse.Namespace) -> Any:
    import jaxbp
    from audit import interrupt
    from audit.loader import load_grad_fn

    # one device keeps the engine's default; more than JAX sees is a one-line error
    sharded = {"mesh": jaxbp.data_mesh(args.devices)} if args.devices > 1 else {}
    # a name of jaxbp.fit's goes to the engine, which refuses "autodiff" with its reason
    grad: Any = args.grad if args.grad in jaxbp.GRADS else load_grad_fn(args.grad)
    x, y = _load_data(args)
    _check_widths(args, x, y)  # first: a width that cannot fit the data is the root problem
    _check_seed(args)
    _check_output(args)
    _check_memory(args, int(x.shape[0]))

    def progress(line: str) -> None:
        interrupt.raise_if_pending()  # a Ctrl-C that a callback swallowed stops the run here
        if not args.quiet:
            print(f"{PROG}: {line}", file=sys.stderr, flush=True)

    return _engine()(
        grad,
        sizes=args.sizes,
        activation=args.activation,
        loss=args.loss,
        output_activation=args.output_activation,
        data=(x, y),
        data_name=args.data,
        points=args.points,
        seed=args.seed,
        dtype=args.dtype,
        steps=args.steps,
        learning_rate=args.lr,
        rtol=args.rtol,
        atol=args.atol,
        fd=args.fd,
        reference=args.reference,
        progress=progress,
        memory=args.memory,
        **sharded,
    )


def _run(args: argparse.Namespace) -> int:
    from audit import interrupt
    from audit.cells import verdict_line
    from audit.report import check_out_dir, write_report
    from audit.table import format_table

    rule = args.vjp or args.jvp or args.backward
    if not rule:
        _check_network_options(args)
    if args.report:
        check_out_dir(args.out)  # before the long run, so a bad --out costs nothing
        threading.Thread(target=_import_plotting, daemon=True).start()
    result = cli_checks.audit_function(args) if rule else _audit_network(args)
    interrupt.raise_if_pending()
    if not args.quiet:
        print(format_table(result, color=_use_color(sys.stdout), max_rows=args.max_rows))
    # 2 when nothing disagrees but jax.grad was never finite for some weight or factor:
    # the input left the reference nothing to judge, which is neither agreement nor a slip
    code = {"passed": 0, "failed": 1}.get(result.verdict, 2)
    if code == 2:
        print(f"{PROG}: error: {verdict_line(result)}", file=sys.stderr)
    if not args.report:
        interrupt.raise_if_pending()
        if args.quiet:
            print(verdict_line(result))
        return code
    # From here a Ctrl-C waits: write_report stops at its swap if one came, the previous
    # report kept; once the new one is in place the run is done, and a later Ctrl-C is moot.
    with interrupt.held():
        files = write_report(result, args.out)
        if not args.quiet:
            others = ", ".join(os.path.basename(f) for f in files if not f.endswith(".html"))
            print(f"report: {os.path.join(args.out, 'report.html')} (also {others})")
        if args.quiet:
            print(verdict_line(result))
    return code


def _error_line(e: BaseException) -> str:
    from audit.loader import LoadError, UserCodeError
    from audit.report import ReportError

    if isinstance(e, UserCodeError):
        return f"{_one_line(e)} (JAXBP_DEBUG=1 shows the traceback)"
    if isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e):
        return (
            f"out of memory ({type(e).__name__}: {_one_line(e)}); lower --points, --steps or "
            "the network's size"
        )
    if isinstance(e, (LoadError, ReportError, ValueError, TypeError, OSError)):
        # FileNotFoundError is an OSError; every one of these is about the input, not a bug
        return _one_line(e)
    what = f"sys.exit({e.code!r})" if isinstance(e, SystemExit) else type(e).__name__
    return (
        f"internal error, {what}: {_one_line(e)}; rerun with JAXBP_DEBUG=1 for the traceback "
        "and report it"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``jaxbp-audit`` with ``argv`` (default ``sys.argv[1:]``) and returns the exit status.

    0: every gradient agrees; 1: some disagree; 2: a usage or input error, or an exception
    from the audited code or the audit itself, told in one line on stderr (with
    ``JAXBP_DEBUG=1`` the traceback is printed too); 130: interrupted, previous report kept.
    """
    from audit import interrupt

    parser = build_parser()
    try:
        args = parser.parse_args(argv, namespace=cli_checks.unset_namespace())
        problem = cli_checks.settle(args, parser) or distributed.usage_problem(args)
        if problem:
            parser.error(problem)
    except SystemExit as e:  # --help, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 2
    if argv is None and distributed.supervises(args):
        return distributed.supervise(args, sys.argv[1:])
    # A command-line run (argv None) only exits after this: a Ctrl-C while the interpreter
    # shuts down (JAX's exit handlers take a moment) must not turn the outcome into a death
    # by SIGINT. Called in-process with a list, the previous handler comes back.
    with interrupt.handling(ignore_after=argv is None):
        if argv is None:  # a process of its own, whose JAX settings are this run's to choose
            _compilation_cache(args)
        code = _main(args)
    if argv is None:
        # The outcome is decided and printed. Python's last garbage collections at exit
        # would walk every object JAX and matplotlib made (half a second); frozen objects
        # are skipped. Exit handlers still run, and objects freed by reference counting
        # (open files included) are finalized as usual.
        gc.freeze()
    return code


def _compilation_cache(args: argparse.Namespace) -> None:
    """JAX's persistent compilation cache on, unless asked not to or its folder is not usable."""
    from audit import compile_cache, program_cache

    if not args.cache or compile_cache.disabled_by_env():
        compile_cache.disable()
        program_cache.disable()
        return
    why_off = compile_cache.enable(compile_cache.cache_dir())
    if why_off is None:  # the programs themselves beside XLA's, so a run traces none again
        why_off = program_cache.enable(compile_cache.programs_dir())
    if why_off is not None and not args.quiet:
        print(f"{PROG}: compilation cache off: {why_off}", file=sys.stderr, flush=True)


def _main(args: argparse.Namespace) -> int:
    from audit import interrupt

    try:
        if args.distributed:
            return distributed.run_joined(args, _run)
        return _run(args)
    except KeyboardInterrupt:
        pass
    except BaseException as e:  # SystemExit included: exit 1 only ever means "disagree"
        if not interrupt.pending():  # else a Ctrl-C that came out as another error
            if os.environ.get("JAXBP_DEBUG") == "1":
                traceback.print_exception(e)
            print(f"{PROG}: error: {_error_line(e)}", file=sys.stderr)
            return 2
    print(f"{PROG}: interrupted", file=sys.stderr)
    return 130
