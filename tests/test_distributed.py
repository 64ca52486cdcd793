"""Training and the audit over two processes joined with jax.distributed, on 127.0.0.1.

Each process has 2 virtual CPU devices (4 in all), and they exchange data with gloo. The
reference is one process with 4 devices (``tests/distributed_checks.py --reference``), and
for training also one device without a mesh. Every process is started on a free port with
a bounded wait, and killed in ``finally`` whatever happens.
"""

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

import jaxbp
from audit import distributed
from audit.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKS = ROOT / "tests" / "distributed_checks.py"
# the reference (tests/distributed_checks.py) runs the same audit from Python
AUDIT = ["--grad", "closed_form", "--sizes", "2,3,1", "--dtype", "float64", "--points", "8",
         "--steps", "10", "--no-fd", "--no-cache"]  # fmt: skip
WAIT = 150  # seconds all processes together may take, on a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int) -> dict[str, str]:
    e = dict(os.environ, JAX_PLATFORMS="cpu")
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    for name in ("JAXBP_DEBUG", "JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
        e.pop(name, None)
    return e


def start(args, devices: int, log: pathlib.Path) -> subprocess.Popen:
    """A process of its own session (killing its group ends the CLI's child too), output
    to ``log.out`` and ``log.err``."""
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, *map(str, args)], cwd=ROOT, env=env(devices), stdout=out,
            stderr=err, start_new_session=True,
        )  # fmt: skip


def cli(port: int, process: int, *extra) -> list:
    return ["-m", "audit", *AUDIT, "--distributed", "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", "2", "--process-id", str(process), *extra]  # fmt: skip


def text(log: pathlib.Path, stream: str) -> str:
    return pathlib.Path(f"{log}.{stream}").read_text()


def load(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return dict(arrays)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every process of this file, started together so that their waits overlap:

    - ``reference``: one process with 4 devices (training, and the audit of :data:`AUDIT`);
    - ``train-0``, ``train-1``: training over two processes;
    - ``audit-0``, ``audit-1``: ``jaxbp-audit --distributed`` over two processes;
    - ``alone-0``: process 0 of two whose process 1 never starts;
    - ``nowhere``: ``jaxbp.initialize_distributed()`` outside any cluster;
    - ``dead-0``, ``dead-1``: a run whose process 1 is killed once process 0 reports progress;
    - ``term``: a run of one process whose supervisor is sent SIGTERM once it reports progress.

    All are killed after :data:`WAIT` seconds, or when the fixture fails. Returns the folder,
    the exit statuses, the ports, and when each process ended and ``dead-1`` was killed.
    """
    out = tmp_path_factory.mktemp("distributed")
    ports = {name: free_port() for name in ("train", "audit", "alone", "dead", "term")}
    plan = {
        "reference": ([CHECKS, out, "--reference"], 4),
        **{f"train-{i}": ([CHECKS, out, "--process-id", i, "--port", ports["train"]], 2)
           for i in (0, 1)},
        **{f"audit-{i}": (cli(ports["audit"], i, "--out", out / f"report-{i}"), 2) for i in (0, 1)},
        "alone-0": (cli(ports["alone"], 0, "--timeout", 2, "--no-report"), 2),
        "nowhere": (["-c", "import jaxbp; jaxbp.initialize_distributed()"], 1),
        # a run of one process, sent SIGTERM once it reports progress
        "term": (["-m", "audit", *AUDIT, "--distributed", "--coordinator",
                  f"127.0.0.1:{ports['term']}", "--num-processes", 1, "--process-id", 0,
                  "--steps", 100000, "--no-report"], 1),
        # a timeout that a loaded machine's slow start of process 1 cannot run out
        **{f"dead-{i}": (cli(ports["dead"], i, "--timeout", 10, "--no-report", "--steps", 0,
                             "--points", 1), 2) for i in (0, 1)},
    }  # fmt: skip
    procs, codes, ended, killed, termed = {}, {}, {}, None, False
    try:
        t0 = time.monotonic()
        for name, (args, devices) in plan.items():
            procs[name] = start(args, devices, out / name)
        while len(codes) < len(procs):
            late = sorted(set(procs) - set(codes))
            assert time.monotonic() - t0 < WAIT, f"still running after {WAIT} s: {late}"
            for name in late:
                if procs[name].poll() is not None:
                    codes[name], ended[name] = procs[name].returncode, time.monotonic() - t0
            # process 0 reports progress once every process has joined the run
            if killed is None and "jaxbp-audit: " in text(out / "dead-0", "err"):
                os.killpg(procs["dead-1"].pid, signal.SIGKILL)
                killed = time.monotonic() - t0
            if not termed and "jaxbp-audit: " in text(out / "term", "err"):
                procs["term"].send_signal(signal.SIGTERM)  # to the supervisor alone
                termed = True
            time.sleep(0.1)
    finally:
        reap(procs.values())
    return SimpleNamespace(out=out, codes=codes, ports=ports, ended=ended, killed=killed)


def reap(procs) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_training_over_two_processes_equals_one_process_with_four_devices(runs):
    out, codes = runs.out, runs.codes
    for name in ("reference", "train-0", "train-1"):
        assert codes[name] == 0, text(out / name, "err")[-3000:]
    ref = load(out / "reference.npz")
    procs = [load(out / f"process-{i}.npz") for i in (0, 1)]
    # each process handed over its own half of the rows, in order
    assert [list(p["rows"]) for p in procs] == [[0, 8], [8, 16]]
    for run in ("full_sgd", "minibatch_adam"):
        for what in ("params", "losses"):
            key = f"{run}/{what}"
            # one process, 4 devices, against one device: the same sums in another order
            np.testing.assert_allclose(ref[key], ref[f"one_device/{key}"], rtol=1e-12, atol=1e-14)
            for p in procs:
                for given in (key, f"whole/{key}"):  # own rows, or the whole batch everywhere
                    np.testing.assert_allclose(p[given], ref[key], rtol=1e-12, atol=1e-14,
                                               err_msg=given)  # fmt: skip
        # the runs trained: 30 steps moved the loss (so equal params are not the start's)
        assert ref[f"{run}/losses"][-1] < 0.9 * ref[f"{run}/losses"][0]


def test_audit_over_two_processes_equals_one_process_and_process_0_alone_writes(runs):
    out, codes = runs.out, runs.codes
    assert codes["reference"] == 0, text(out / "reference", "err")[-3000:]
    assert codes["audit-0"] == codes["audit-1"] == 0, text(out / "audit-0", "err")[-3000:]
    assert (out / "report-0" / "report.json").is_file()
    assert not (out / "report-1").exists()  # process 1 writes nothing
    mine = json.loads((out / "report-0" / "report.json").read_text())
    ref = json.loads((out / "reference-audit.json").read_text())
    # the devices of both processes
    assert mine["config"]["devices"] == ["cpu:0", "cpu:1", "cpu:2048", "cpu:2049"]
    assert mine["verdict"] == ref["verdict"] == "passed"
    assert mine["points"] == ref["points"]
    assert [w["name"] for w in mine["weights"]] == [w["name"] for w in ref["weights"]]
    for a, b in zip(mine["weights"] + mine["factors"], ref["weights"] + ref["factors"],
                    strict=True):  # fmt: skip
        assert a.get("worst_point") == b.get("worst_point"), a["name"]
        for field in ("manual", "reference", "score"):
            assert a[field] == pytest.approx(b[field], rel=1e-12, abs=0), (a["name"], field)
    # process 0 prints the table (and no runtime log lines); process 1 prints nothing
    table = text(out / "audit-0", "out")
    assert "PASSED: 13/13 weights" in table and "[Gloo]" not in table
    assert text(out / "audit-1", "out") == text(out / "audit-1", "err") == ""


def test_a_missing_process_is_exit_2_naming_the_coordinator(runs):
    out, codes, ports = runs.out, runs.codes, runs.ports
    assert codes["alone-0"] == 2
    assert text(out / "alone-0", "err") == (
        f"jaxbp-audit: error: could not join the run at 127.0.0.1:{ports['alone']} within 2 s "
        "(killed by SIGABRT): the coordinator did not answer or not all 2 processes started; "
        "start every process with the same --coordinator and --num-processes, or raise "
        "--timeout\n"
    )
    assert text(out / "alone-0", "out") == ""
    assert runs.ended["alone-0"] < 60


def test_sigterm_stops_the_audit_as_ctrl_c_does(runs):
    # JAX's runtime takes SIGTERM for a preemption notice and would run on
    err = text(runs.out / "term", "err").splitlines()
    assert runs.codes["term"] == 130, err
    assert err[-1] == "jaxbp-audit: interrupted"


def test_the_coordinator_address_may_come_from_jax_s_own_variable(capsys, monkeypatch):
    port = free_port()
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", f"127.0.0.1:{port}")
    argv = [*AUDIT, "--distributed", "--num-processes", "2", "--process-id", "1",
            "--timeout", "1", "--no-report"]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(
        f"jaxbp-audit: error: could not reach the coordinator at 127.0.0.1:{port} within 1 s ("
    )


def test_no_coordinates_and_no_cluster_say_what_to_pass(runs):
    err = text(runs.out / "nowhere", "err").strip().splitlines()[-1]
    assert runs.codes["nowhere"] == 1
    # JAX's own words in the parentheses
    assert err.startswith("ValueError: JAX could not complete the run's coordinates (")
    assert err.endswith(
        "); coordinator_address, num_processes, process_id came as None and no cluster it reads "
        "(SLURM, Open MPI, Kubernetes, Cloud TPU) supplied them: pass them (jaxbp-audit: "
        "--coordinator, --num-processes, --process-id)"
    )


def test_an_unreachable_coordinator_is_exit_2_naming_it(capsys):
    # process 1 waits for the coordinator before JAX starts: this test's own process serves
    port = free_port()
    t0 = time.monotonic()
    assert main([str(a) for a in cli(port, 1, "--timeout", 1, "--no-report")[2:]]) == 2
    assert time.monotonic() - t0 < 10
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        f"jaxbp-audit: error: could not reach the coordinator at 127.0.0.1:{port} within 1 s ("
    )
    assert captured.err.endswith(
        "); start process 0 there, or check the address and that the port is open\n"
    )
    assert captured.err.count("\n") == 1


def test_a_peer_that_dies_is_exit_2_after_a_bounded_wait(runs):
    out, codes = runs.out, runs.codes
    assert runs.killed is not None, text(out / "dead-0", "err")
    assert codes["dead-1"] == -signal.SIGKILL
    err = text(out / "dead-0", "err").splitlines()
    assert codes["dead-0"] == 2, err
    assert err[-1] == (
        "jaxbp-audit: error: process 0: another process of the run stopped answering (no "
        "heartbeat for 10 s) or failed, and JAX ended this one (killed by SIGABRT); see the "
        "other processes' output"
    )
    stray = [line for line in err if not line.startswith("jaxbp-audit: ")]
    assert not stray, stray  # no runtime log, no trace
    assert runs.ended["dead-0"] - runs.killed < 40


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--coordinator", "127.0.0.1:1234"], "--coordinator needs --distributed"),
        (["--distributed", "--coordinator", "nohost"], "coordinator address 'nohost' is not "
         "HOST:PORT; expected process 0's host and a free port"),
        (["--distributed", "--num-processes", "2", "--process-id", "2"],
         "--process-id 2 with --num-processes 2: expected an id from 0 to 1"),
        (["--distributed", "--timeout", "0"],
         "--timeout 0: expected a finite number of seconds > 0"),
        (["--distributed", "--timeout", "inf"],
         "--timeout inf: expected a finite number of seconds > 0"),
        (["--distributed", "--vjp", "m.py:f", "--inputs", "m.py:x"],
         "--distributed splits a network audit (--grad) over processes; --vjp runs in one "
         "process: drop --distributed"),
    ],
)  # fmt: skip
def test_distributed_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "exc", "message"),
    [
        (("10.0.0.1",), ValueError, "coordinator address '10.0.0.1' is not HOST:PORT"),
        (("h:1", 2, 2), ValueError, "process_id=2 with num_processes=2; expected a process id "
         "from 0 to 1"),
        (("h:1", 0), ValueError, "num_processes=0, expected an int >= 1"),
        (("h:1", 2, 1.0), TypeError, "process_id is float, expected an int >= 0"),
        (("h:1", 2, 0, {"timeout": float("nan")}), ValueError,
         "timeout=nan, expected a finite number of seconds > 0"),
    ],
)  # fmt: skip
def test_initialize_bad_input(args, exc, message):
    kwargs = args[-1] if isinstance(args[-1], dict) else {}
    with pytest.raises(exc) as e:
        jaxbp.initialize_distributed(*args[: len(args) - bool(kwargs)], **kwargs)
    assert message in str(e.value)


def test_local_rows_on_one_process_is_every_row():
    assert jaxbp.local_rows(8, jaxbp.data_mesh(1)) == slice(0, 8)


def test_the_runtime_log_filter_keeps_the_cli_lines_only():
    import io

    lines = [
        b"jaxbp-audit: comparing 9 weights at 14 points\n",
        # gloo retrying a peer that is gone: a line of its own, before any error
        b"[external/gloo/gloo/transport/tcp/debug_logger.cc:25] ERROR failed to connect, "
        b"willRetry=1, retry=1, retryLimit=3, rank=0, size=2, local=[127.0.0.1]:46279, "
        b"remote=[127.0.0.1]:21902$2, error=SO_ERROR: Connection refused\n",
        b"E1206 02:13:32.294965   32421 coordination_service.cc:1549] UNAVAILABLE: tasks:\n",
        b"1\n",
        b"The tasks have crashed.\n",
        b"F1206 02:13:32.295570   32432 client.h:80] Terminating process\n",
        b"*** Check failure stack trace: ***\n",
        b"    @     0x7f8154040634  absl::log_internal::LogMessage::SendToLog()\n",
        b"jaxbp-audit: error: process 0: another process stopped\n",
    ]
    kept = io.StringIO()
    distributed.relay(lines, kept)
    assert kept.getvalue().splitlines() == [
        "jaxbp-audit: comparing 9 weights at 14 points",
        "jaxbp-audit: error: process 0: another process stopped",
    ]
