"""Every intermediate of a character-level MLP's backward pass, by hand, audited one by one.

The well-known exercise: a 2-layer MLP that reads three characters and predicts the next,
with an embedding table ``C``, a batch-norm layer, ``tanh`` and a softmax cross-entropy
written out in small named steps. The forward pass marks every intermediate and every
parameter with ``tap(name, value)``; the backward pass returns ``d<name>`` for each, all
derived by hand; ``audit.check_backward`` compares each one, element by element, with
autodiff of the forward pass at many points, and names the first intermediate in backward
order that disagrees.

The words are made here (no download): short names built from a fixed syllable table with a
NumPy generator of a fixed seed, cut into (three characters -> next character) examples.

Run: ``python examples/backprop_ninja.py``. It audits the right backward pass in float32
and float64 (one line per intermediate in backward order, then the verdict), then several
copies with one deliberate slip each, printing the intermediate the audit names first and
its hint. It exits 0 when the right pass passes and every slip is named where it was put,
1 otherwise. ``JAXBP_QUICK=1`` runs fewer points on a smaller batch.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import audit

BLOCK_SIZE = 3  # characters of context
N_EMBD = 10  # embedding size: W1 is (BLOCK_SIZE * N_EMBD, N_HIDDEN) = (30, 30), square
N_HIDDEN = 30
EPS = 1e-5
SYLLABLES = (
    "ka ri na lo me sa ti ra el an be da jo mi ko li ya sha no ve zu th ia ce or is ne ly".split()
)


def make_words(n: int, *, seed: int = 0) -> list[str]:
    """``n`` made-up names of 1 to 3 syllables from :data:`SYLLABLES`, the same every run."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 4, size=n)
    return ["".join(rng.choice(SYLLABLES, size=k)) for k in lengths]


def make_dataset(words: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every (context -> next character) pair of the words, ``.`` marking start and end.

    Returns:
      ``X: (N, BLOCK_SIZE) int32`` character indices, ``Y: (N,) int32`` the next one, and the
      vocabulary (``.`` first, then the letters in order).
    """
    vocab = [".", *sorted(set("".join(words)))]
    stoi = {ch: i for i, ch in enumerate(vocab)}
    xs, ys = [], []
    for w in words:
        context = [0] * BLOCK_SIZE
        for ch in w + ".":
            xs.append(context)
            ys.append(stoi[ch])
            context = [*context[1:], stoi[ch]]
    return np.array(xs, np.int32), np.array(ys, np.int32), vocab


def init_params(vocab_size: int, dtype=jnp.float32, *, key: jax.Array) -> dict[str, jax.Array]:
    """``C: (V, N_EMBD)``, ``W1: (BLOCK_SIZE*N_EMBD, N_HIDDEN)``, ``b1, bngain, bnbias:
    (N_HIDDEN,)``, ``W2: (N_HIDDEN, V)``, ``b2: (V,)``; every one random and nonzero, so no
    gradient hides behind a zero."""
    kc, k1, kb1, kg, kb, k2, kb2 = jax.random.split(key, 7)
    fan_in = BLOCK_SIZE * N_EMBD
    return {
        "C": jax.random.normal(kc, (vocab_size, N_EMBD), dtype),
        "W1": jax.random.normal(k1, (fan_in, N_HIDDEN), dtype) * (5 / 3) / fan_in**0.5,
        "b1": 0.1 * jax.random.normal(kb1, (N_HIDDEN,), dtype),
        "bngain": 1 + 0.1 * jax.random.normal(kg, (N_HIDDEN,), dtype),
        "bnbias": 0.1 * jax.random.normal(kb, (N_HIDDEN,), dtype),
        "W2": 0.1 * jax.random.normal(k2, (N_HIDDEN, vocab_size), dtype),
        "b2": 0.1 * jax.random.normal(kb2, (vocab_size,), dtype),
    }


def forward(tap, params, Xb, Yb):
    """Mean cross-entropy of the next character, in small named steps, each one tapped.

    Args:
      tap: ``tap(name, value) -> value``, marks an intermediate (``lambda n, v: v`` to just run).
      params: as :func:`init_params` returns.
      Xb: ``(n, BLOCK_SIZE) int`` contexts; Yb: ``(n,) int`` next characters.

    Returns:
      The scalar loss.
    """
    n = Xb.shape[0]
    C = tap("C", params["C"])
    emb = tap("emb", C[Xb])  # (n, BLOCK_SIZE, N_EMBD)
    embcat = tap("embcat", emb.reshape(n, -1))  # (n, BLOCK_SIZE * N_EMBD)
    W1, b1 = tap("W1", params["W1"]), tap("b1", params["b1"])
    hprebn = tap("hprebn", embcat @ W1 + b1[None, :])  # (n, N_HIDDEN)
    bnmeani = tap("bnmeani", jnp.sum(hprebn, axis=0, keepdims=True) / n)  # (1, N_HIDDEN)
    bndiff = tap("bndiff", hprebn - bnmeani)
    bndiff2 = tap("bndiff2", bndiff**2)
    bnvar = tap("bnvar", jnp.sum(bndiff2, axis=0, keepdims=True) / (n - 1))  # Bessel
    bnvar_inv = tap("bnvar_inv", (bnvar + EPS) ** -0.5)
    bnraw = tap("bnraw", bndiff * bnvar_inv)
    bngain, bnbias = tap("bngain", params["bngain"]), tap("bnbias", params["bnbias"])
    hpreact = tap("hpreact", bngain[None, :] * bnraw + bnbias[None, :])
    h = tap("h", jnp.tanh(hpreact))
    W2, b2 = tap("W2", params["W2"]), tap("b2", params["b2"])
    logits = tap("logits", h @ W2 + b2[None, :])  # (n, V)
    logit_maxes = tap("logit_maxes", jnp.max(logits, axis=1, keepdims=True))  # (n, 1)
    norm_logits = tap("norm_logits", logits - logit_maxes)
    counts = tap("counts", jnp.exp(norm_logits))
    counts_sum = tap("counts_sum", jnp.sum(counts, axis=1, keepdims=True))  # (n, 1)
    counts_sum_inv = tap("counts_sum_inv", counts_sum**-1)
    probs = tap("probs", counts * counts_sum_inv)
    logprobs = tap("logprobs", jnp.log(probs))
    return -jnp.mean(logprobs[jnp.arange(n), Yb])


# each slip: what it gets wrong, and the intermediate it was put in
SLIPS = {
    "dlogprobs: the mean's 1/n dropped": "logprobs",
    "dcounts_sum: the sign of d(1/x) flipped": "counts_sum",
    "dhpreact: the tanh's (1 - h**2) missing": "hpreact",
    "dbnvar: exponent -1/2 where -3/2 belongs": "bnvar",
    "dbndiff2: 1/n where Bessel's 1/(n-1) belongs": "bndiff2",
    "dembcat: W1 where W1.T belongs": "embcat",
    "dC: .set where repeated characters must .add": "C",
}


def backward(params, Xb, Yb, slips=None) -> dict[str, jax.Array]:
    """``d<name>`` for every intermediate :func:`forward` taps, by hand, in backward order.

    Args:
      params, Xb, Yb: as :func:`forward` takes them.
      slips: ``{slip: flag}`` over :data:`SLIPS`, a scalar float flag each; where a flag is
        1 that slip replaces the right line. Flags rather than a string, so that one
        compiled audit serves the right pass and every slip. None: the right pass.

    Returns:
      ``{name: dloss/dname}``, each of its intermediate's shape.
    """

    def planted(slip, right, wrong):
        if slips is None:
            return right
        return jnp.where(slips[slip] > 0.5, wrong, right)

    v = {}
    forward(lambda name, value: v.setdefault(name, value), params, Xb, Yb)
    n, vocab_size = v["logits"].shape
    onehot = jax.nn.one_hot(Yb, vocab_size, dtype=v["logits"].dtype)
    argmax = jax.nn.one_hot(jnp.argmax(v["logits"], axis=1), vocab_size, dtype=onehot.dtype)

    dlogprobs = -onehot / n
    dlogprobs = planted("dlogprobs: the mean's 1/n dropped", dlogprobs, -onehot)
    dprobs = dlogprobs / v["probs"]
    dcounts_sum_inv = jnp.sum(v["counts"] * dprobs, axis=1, keepdims=True)
    dcounts_sum = -(v["counts_sum"] ** -2) * dcounts_sum_inv
    dcounts_sum = planted("dcounts_sum: the sign of d(1/x) flipped", dcounts_sum, -dcounts_sum)
    dcounts = v["counts_sum_inv"] * dprobs + dcounts_sum
    dnorm_logits = v["counts"] * dcounts
    dlogit_maxes = -jnp.sum(dnorm_logits, axis=1, keepdims=True)
    dlogits = dnorm_logits + argmax * dlogit_maxes
    db2 = jnp.sum(dlogits, axis=0)
    dW2 = v["h"].T @ dlogits
    dh = dlogits @ v["W2"].T
    dhpreact = (1 - v["h"] ** 2) * dh
    dhpreact = planted("dhpreact: the tanh's (1 - h**2) missing", dhpreact, dh)
    dbnbias = jnp.sum(dhpreact, axis=0)
    dbngain = jnp.sum(v["bnraw"] * dhpreact, axis=0)
    dbnraw = v["bngain"][None, :] * dhpreact
    dbnvar_inv = jnp.sum(v["bndiff"] * dbnraw, axis=0, keepdims=True)
    dbnvar = -0.5 * (v["bnvar"] + EPS) ** -1.5 * dbnvar_inv
    dbnvar = planted("dbnvar: exponent -1/2 where -3/2 belongs", dbnvar,
                     -0.5 * (v["bnvar"] + EPS) ** -0.5 * dbnvar_inv)  # fmt: skip
    dbndiff2 = jnp.ones_like(v["bndiff2"]) * dbnvar / (n - 1)
    dbndiff2 = planted("dbndiff2: 1/n where Bessel's 1/(n-1) belongs", dbndiff2,
                       jnp.ones_like(v["bndiff2"]) * dbnvar / n)  # fmt: skip
    dbndiff = v["bnvar_inv"] * dbnraw + 2 * v["bndiff"] * dbndiff2
    dbnmeani = -jnp.sum(dbndiff, axis=0, keepdims=True)
    dhprebn = dbndiff + dbnmeani / n
    db1 = jnp.sum(dhprebn, axis=0)
    dW1 = v["embcat"].T @ dhprebn
    dembcat = dhprebn @ v["W1"].T
    dembcat = planted("dembcat: W1 where W1.T belongs", dembcat, dhprebn @ v["W1"])
    demb = dembcat.reshape(v["emb"].shape)
    dC = jnp.zeros_like(v["C"]).at[Xb].add(demb)
    dC = planted("dC: .set where repeated characters must .add", dC,
                 jnp.zeros_like(v["C"]).at[Xb].set(demb))  # fmt: skip
    return dict(
        logprobs=dlogprobs, probs=dprobs, counts_sum_inv=dcounts_sum_inv,
        counts_sum=dcounts_sum, counts=dcounts, norm_logits=dnorm_logits,
        logit_maxes=dlogit_maxes, logits=dlogits, b2=db2, W2=dW2, h=dh, hpreact=dhpreact,
        bnbias=dbnbias, bngain=dbngain, bnraw=dbnraw, bnvar_inv=dbnvar_inv, bnvar=dbnvar,
        bndiff2=dbndiff2, bndiff=dbndiff, bnmeani=dbnmeani, hprebn=dhprebn, b1=db1, W1=dW1,
        embcat=dembcat, emb=demb, C=dC,
    )  # fmt: skip


def batch(X: np.ndarray, Y: np.ndarray, size: int, *, key: jax.Array):
    """``size`` examples drawn without replacement: ``(Xb: (size, BLOCK_SIZE), Yb: (size,))``."""
    ix = np.asarray(jax.random.choice(key, X.shape[0], (size,), replace=False))
    return jnp.asarray(X[ix]), jnp.asarray(Y[ix])


# dlogit_maxes and db1 are 0 in exact arithmetic (a shift of the logits leaves the softmax as
# it is; batch norm subtracts b1 back out): on both sides they are the residue of sums of
# terms that cancel, which the audit's float64 rule counts as roundoff
ZERO_IN_EXACT_ARITHMETIC = ("logit_maxes", "b1")


def auditor(Xb, Yb):
    """``audit(params, slip=None, *, points, key)``: ``audit.check_backward`` of
    :func:`backward` with that slip planted, on this batch; every call with params of one
    dtype shares one compiled audit."""

    def fwd(tap, params, slips):
        del slips
        return forward(tap, params, Xb, Yb)

    def back(params, slips):
        return backward(params, Xb, Yb, slips)

    fwd.__name__, back.__name__ = "forward", "backward"

    def run(params, slip=None, *, points: int, key: jax.Array):
        dt = params["C"].dtype
        flags = {s: jnp.asarray(s == slip, dt) for s in SLIPS}
        return audit.check_backward(fwd, back, params, flags, points=points, key=key)

    return run


if __name__ == "__main__":
    quick = os.environ.get("JAXBP_QUICK") == "1"
    points, size = (15, 16) if quick else (63, 32)
    X, Y, vocab = make_dataset(make_words(300))
    k_init, k_batch, k_audit = jax.random.split(jax.random.key(0), 3)
    Xb, Yb = batch(X, Y, size, key=k_batch)
    print(f"{len(X)} examples over a {len(vocab)}-character vocabulary; a batch of {size}")
    run = auditor(Xb, Yb)
    ok = True
    for dtype in (jnp.float32, jnp.float64):
        name = jnp.dtype(dtype).name
        with jax.enable_x64(dtype == jnp.float64):
            params = init_params(len(vocab), dtype, key=k_init)
            r = run(params, points=points, key=k_audit)
        print(f"\nthe right backward pass, {name}:")
        for f in r.factors:
            status = {"pass": "PASS", "precision": "PASS*"}.get(f["status"], "FAIL")
            zero = "  (0 in exact arithmetic)" if f["name"] in ZERO_IN_EXACT_ARITHMETIC else ""
            print(f"  d{f['name']:<15} {status:<5}  worst element off by {f['abs_err']:.1e}{zero}")
        print(audit.verdict_line(r))
        ok &= r.passed
    print(f"\none slip at a time, float32, {points + 1} points:")
    params = init_params(len(vocab), jnp.float32, key=k_init)
    for slip, where in SLIPS.items():
        r = run(params, slip, points=points, key=k_audit)
        first = next((f for f in r.factors if not f["passed"]), None)
        if first is None:
            print(f"{slip}: not caught (it was put in {where})")
        else:
            at = "" if first["name"] == where else f", but it was put in {where}"
            print(f"{slip}\n  first failing intermediate: {first['name']}{at}\n"
                  f"  {first['hint']}")  # fmt: skip
        ok &= first is not None and first["name"] == where
    sys.exit(0 if ok else 1)
