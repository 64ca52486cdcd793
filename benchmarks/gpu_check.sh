#!/usr/bin/env bash
# GPU check, run on a machine with a CUDA build of jax: the audit must pass correct gradients
# on the accelerator in float32 and float64, with no false alarms from TF32 matmuls.
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import jax; print('jax', jax.__version__, jax.default_backend(), jax.devices())"

echo "== default audit (float32) =="
/usr/bin/time -f "wall %e s, max rss %M KB" timeout 150 python3 -m audit --out "$OUT/report-f32" --quiet
echo "exit $?"
echo "== default audit (float64) =="
timeout 100 python3 -m audit --dtype float64 --no-report --quiet
echo "exit $?"
echo "== a broken gradient must still fail (exit 1) =="
timeout 100 python3 -m audit --grad examples/my_gradients.py:buggy_grads --no-report --quiet
echo "exit $?"

echo "== closed form, 64-32-10 tanh softmax_ce, float32 and float64 =="
timeout 150 python3 - <<'PY'
import time
import jax
jax.config.update("jax_enable_x64", True)
import audit

x = jax.random.normal(jax.random.key(0), (128, 64))
y = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (128,), 0, 10), 10)
for dtype in ("float32", "float64"):
    t = time.perf_counter()
    r = audit.audit_network(
        "closed_form", sizes=(64, 32, 10), activation="tanh", loss="softmax_ce",
        data=(x, y), dtype=dtype, points=64, steps=200, learning_rate=0.1,
    )
    bad = [f["name"] for f in r.factors if not f["passed"]]
    print(dtype, "passed", r.passed, "failing weights", len(r.failed_weights), "of",
          len(r.weights), "failing factors", bad, "backend", r.config["backend"],
          f"{time.perf_counter() - t:.1f} s")
PY
echo "== engine tests on the GPU =="
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_compare.py tests/test_engine.py \
    -k "seed_formulas or closed_form_passes or mistake or check_gradients" 2>&1 | tail -5
