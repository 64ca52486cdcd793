"""``jaxbp-audit --distributed``: one network audit over the processes of a ``jax.distributed`` run.

Every process runs the same command. Each joins the run (:func:`jaxbp.initialize_distributed`),
the audit's points are split over every device of every process, and the comparisons reduce
to each weight's worst case across all of them. Process 0 prints the table and writes the
report; the others print and write nothing, and every process exits with the same status.

A command-line run is supervised: the process started by the user runs the audit in a child
process and waits for it. JAX aborts a process whose run lost a member (the coordinator
unreachable at the start, or a peer that stopped sending heartbeats later); the supervisor
turns that into exit status 2 and one line on stderr, after about ``--timeout`` seconds.
The child's runtime log lines (gloo's and XLA's, on either stream) are dropped
unless ``JAXBP_DEBUG=1``. A SIGTERM to the supervisor reaches the child as SIGINT (exit
130, as Ctrl-C): the child's JAX takes SIGTERM for a preemption notice and runs on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

__all__ = [
    "JOINED_FD",
    "add_options",
    "relay",
    "run_joined",
    "supervise",
    "supervises",
    "usage_problem",
]

PROG = "jaxbp-audit"
JOINED_FD = "JAXBP_AUDIT_JOINED_FD"  # set for the child: the pipe it reports joining on

# log lines of the C++ runtime on stderr: absl's "E1206 02:13:32.294965   32421 file.cc:123]
# ...", gloo's "[external/gloo/gloo/transport/tcp/debug_logger.cc:25] ERROR failed to
# connect, ..." (its retries while a peer is gone), and a fatal error's stack trace
_RUNTIME_LOG = re.compile(
    r"^([EFWI]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]"
    r"|\[[^\]\s]+\.(cc|h|cpp):\d+\] |\*\*\* |\s+@ )"
)


def add_options(parser: argparse.ArgumentParser) -> None:
    """Adds ``--distributed``, ``--coordinator``, ``--num-processes``, ``--process-id`` and
    ``--timeout`` to ``parser``."""
    from jaxbp.distributed import DISTRIBUTED_TIMEOUT

    group = parser.add_argument_group(
        "several processes (every process runs the same command; process 0 writes the report)"
    )
    group.add_argument(
        "--distributed", action="store_true",
        help="join a jax.distributed run and split the audit points over every device of every "
        "process; without the three options below, JAX reads JAX_COORDINATOR_ADDRESS and "
        "SLURM's or Open MPI's variables",
    )  # fmt: skip
    group.add_argument(
        "--coordinator", metavar="HOST:PORT", default=None,
        help="process 0's address and a free port, e.g. 10.0.0.1:1234",
    )  # fmt: skip
    group.add_argument(
        "--num-processes", type=int, default=None, metavar="N", help="processes in the run"
    )  # fmt: skip
    group.add_argument(
        "--process-id", type=int, default=None, metavar="I",
        help="this process's number, 0 to N-1",
    )  # fmt: skip
    group.add_argument(
        "--timeout", type=float, default=DISTRIBUTED_TIMEOUT, metavar="SECONDS",
        help="how long to wait for the coordinator and the other processes, at the start and "
        f"when one stops answering (default {DISTRIBUTED_TIMEOUT:g})",
    )  # fmt: skip


def usage_problem(args: argparse.Namespace) -> str | None:
    """A usage problem with the options above, in one line, or None."""
    flags = [
        f"--{name.replace('_', '-')}"
        for name in ("coordinator", "num_processes", "process_id")
        if getattr(args, name) is not None
    ]
    if flags and not args.distributed:
        return f"{' and '.join(flags)} need{'s' if len(flags) == 1 else ''} --distributed"
    if not args.distributed:
        return None
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        return f"--timeout {args.timeout:g}: expected a finite number of seconds > 0"
    rule = next((f"--{k}" for k in ("vjp", "jvp", "backward") if getattr(args, k, None)), None)
    if rule:
        return (
            f"--distributed splits a network audit (--grad) over processes; {rule} runs in one "
            "process: drop --distributed"
        )
    from jaxbp.distributed import parse_coordinator

    try:
        _check_ids(args.num_processes, args.process_id)
        if args.coordinator is not None:
            parse_coordinator(args.coordinator)
    except ValueError as e:
        return str(e)
    return None


def _check_ids(num_processes: int | None, process_id: int | None) -> None:
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num-processes {num_processes}: expected at least 1")
    if process_id is not None and process_id < 0:
        raise ValueError(f"--process-id {process_id}: expected at least 0")
    if None not in (num_processes, process_id) and process_id >= num_processes:
        raise ValueError(
            f"--process-id {process_id} with --num-processes {num_processes}: expected an id "
            f"from 0 to {num_processes - 1}"
        )


def supervises(args: argparse.Namespace) -> bool:
    """Whether this command-line process should start the audit as a supervised child:
    ``--distributed`` was given and this is not that child already."""
    return bool(args.distributed) and JOINED_FD not in os.environ


def _address(args: argparse.Namespace) -> str:
    address = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    return address or "the address JAX found in the environment"


def _died(args: argparse.Namespace, code: int, joined: bool) -> str:
    """The one line for a child that ended without an exit status of the CLI's own."""
    who = "this process" if args.process_id is None else f"process {args.process_id}"
    n = "the" if args.num_processes is None else f"all {args.num_processes}"
    how = (
        f"killed by {signal.Signals(-code).name}"
        if code < 0 and -code in signal.valid_signals()
        else f"exit status {code}"
    )
    if not joined:
        return (
            f"could not join the run at {_address(args)} within {args.timeout:g} s ({how}): "
            f"the coordinator did not answer or not {n} processes started; start every "
            "process with the same --coordinator and --num-processes, or raise --timeout"
        )
    return (
        f"{who}: another process of the run stopped answering (no heartbeat for "
        f"{args.timeout:g} s) or failed, and JAX ended this one ({how}); see the other "
        "processes' output"
    )


def relay(lines: Iterable[bytes], to: TextIO, keep_all: bool = False) -> None:
    """Copy the child's output ``lines`` to the stream ``to``, without the runtime's log lines.

    An error or fatal log line can go on over several lines; what follows it is dropped up
    to the next line of the CLI's own (they all start with ``jaxbp-audit:``)."""
    in_message = False
    for raw in lines:
        line = raw.decode(errors="replace")
        log = _RUNTIME_LOG.match(line)
        if log:
            in_message = line[0] in "EF"
        elif in_message and line.startswith(f"{PROG}:"):
            in_message = False
        if keep_all or not (log or in_message):
            to.write(line)
            to.flush()


def supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``jaxbp-audit argv`` in a child process and return its exit status, or 2 with one
    line on stderr when it died without one (see the module docstring)."""
    import audit

    read_end, write_end = os.pipe()
    root = os.path.dirname(os.path.dirname(os.path.abspath(audit.__file__)))
    env = dict(os.environ, **{JOINED_FD: str(write_end)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    debug = os.environ.get("JAXBP_DEBUG") == "1"
    # Ctrl-C reaches the child from the terminal itself; a SIGTERM sent to this process alone
    # (a scheduler cancelling the job) is passed on as SIGINT
    on_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "audit", *argv], env=env, pass_fds=(write_end,),
                stderr=subprocess.PIPE,
            )  # fmt: skip
        finally:
            os.close(write_end)  # the child's copy stays open in the child
        # the child's JAX takes SIGTERM for a preemption notice and runs on: a SIGTERM
        # here stops the audit as Ctrl-C does
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
        relay(child.stderr, sys.stderr, debug)
        code = child.wait()
        joined = bool(os.read(read_end, 1))
    finally:
        os.close(read_end)
        signal.signal(signal.SIGINT, on_int)
        signal.signal(signal.SIGTERM, on_term)
    if code in (0, 1, 2, 130):
        return code
    if code == -signal.SIGINT:  # Ctrl-C before the child's own handler was in place
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    print(f"{PROG}: error: {_died(args, code, joined)}", file=sys.stderr, flush=True)
    return 2


def _runtime_stdout_off() -> None:
    """Point file descriptor 1 at the null device, and Python's ``sys.stdout`` at a copy of
    it: gloo prints its connection lines to descriptor 1, from several threads at once, into
    the middle of the table."""
    sys.stdout.flush()
    kept = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = open(kept, "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors)


def _say_joined() -> None:
    fd = os.environ.pop(JOINED_FD, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))


def run_joined(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Join the run that ``args`` describe, then ``run(args)`` on every device of every
    process; returns the largest exit status of all processes, the same everywhere.

    Processes other than 0 run with ``--no-report --quiet`` and their standard output
    discarded. ``--devices`` must be left out or name every device of the run.
    """
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    import jaxbp

    if JOINED_FD in os.environ and os.environ.get("JAXBP_DEBUG") != "1":
        _runtime_stdout_off()  # a supervised child: its descriptors are its own
    jaxbp.initialize_distributed(
        args.coordinator, args.num_processes, args.process_id, timeout=args.timeout
    )
    _say_joined()
    total = jax.device_count()
    if args.devices not in (1, total):
        raise ValueError(
            f"--devices {args.devices} with --distributed: the run has {total} devices over "
            f"{jax.process_count()} processes and the audit uses all of them; leave --devices out"
        )
    args.devices = total
    first = jax.process_index() == 0
    if not first:
        args.report, args.quiet = False, True
    with contextlib.nullcontext() if first else contextlib.redirect_stdout(io.StringIO()):
        code = run(args)
    # every process waits here until all are done (process 0 may still be writing its
    # report), and all leave with the same status
    codes = multihost_utils.process_allgather(np.int32(code))
    return int(np.max(codes))
