"""SynthSAEBench: our architectures against SAELens's and dictionary_learning's trainers, on the same rows.

The data come from ``sae_lens.synthetic`` (Chanin and Garriga-Alonso 2026): a ``SyntheticModel`` with
the SynthSAEBench-16k configuration of SAELens's ``docs/synth_sae_bench.md`` (16,384 true features in
768 dimensions, Zipfian firing, a hierarchy of 128 roots with branching 4 and depth 3 whose children
are mutually exclusive and scaled by their parent, low-rank correlation, orthogonalised features, seed
42), or a variant scaled down for a CPU:

==========  ========  ======  =====  =====  =====  =================================================
size        features  dims    roots  width  k      note
==========  ========  ======  =====  =====  =====  =================================================
``16k``     16,384    768     128    4,096  25     the published benchmark (build: ~40 min on 2 cores)
``scaled``  4,096     256     32     1,024  16     the CPU table; roots scaled with the features
``smoke``   512       64      4      128    8      the test (``tests/test_bench_synth.py``), seconds
==========  ========  ======  =====  =====  =====  =================================================

The width is a quarter of the true features, as the benchmark recommends. One training stream of
``--rows`` rows and one evaluation set of ``--eval-rows`` rows (with their true activations) are drawn
once; the model and both sets are cached under ``--cache`` (built once, reloaded after), so every trainer
and every seed trains on exactly the same rows, in the same order for the peers (ours shuffles them,
seeded). Scores are ``sklearn_sae.evaluate``'s (equal to ``sae_lens.synthetic.evals``'s, as
``tests/test_synth_recovery.py`` shows): SynthSAEBench's MCC (Hungarian on absolute cosine), uniqueness,
per-latent precision / recall / F1, explained variance, L0 and dead latents, on the evaluation rows.

Trainers (``--trainers``; names are ``group:architecture``):

- ``ours:*``: ``SparseAutoencoderTransformer`` at its defaults, ``k`` and the width of the size, one pass
  over the rows (``max_epochs=1``, ``validation_fraction=0``, so it sees the same rows as the peers).
  ``relu`` and ``jumprelu`` take the ``l1_coef`` that gives L0 ~ ``k`` (``PENALTIES``, from
  ``--calibrate``). ``matryoshka`` is BatchTopK with prefixes at 1/32, 1/8, 1/2 (SynthSAEBench's 128, 512,
  2,048 of 4,096).
- ``saelens:*``: SAELens's trainer (``SAETrainer``, batch 1,024, constant rate, as the benchmark's
  runner) at its recommended rate 3e-4 (``@3e-4``) and at ``BUDGET_LR`` (``@budget``), chosen for the
  short budget by ``--lr-sweep`` (the best F1 over 3e-4, 1e-3, 3e-3, 1e-2 on seed 0). Each is evaluated
  as SAELens's runner does, by ``sae.encode`` on batches of 1,024 (BatchTopK keeps ``k`` a row on
  average per batch). JumpReLU uses SAELens's quadratic L0 loss with ``target_l0=k``; the standard
  (L1) SAE the ``l1_coefficient`` for L0 ~ ``k``.
- ``dl:*``: dictionary_learning 0.1.0's trainers (``pip install --no-deps dictionary-learning``; only the
  trainers are imported, not the package's ``__init__``, which needs nnsight) at their defaults (their
  rate rule), batch 1,024, with their warm-up lengths (1,000 steps for the rate, 1,000 before the
  threshold, 2,000 for sparsity) cut to 5%, 10% and 20% of a short run.

Usage::

    # the CPU table (README, "SynthSAEBench"): about 113 min of fits on 2 shared cores, the data cached
    PYTHONPATH=. python benchmarks/bench_synth.py --size scaled --seeds 0 1 2 --out synth_scaled.csv
    # a reduced table, about 22 min of fits there: one seed, ours and SAELens at the budget rate
    PYTHONPATH=. python benchmarks/bench_synth.py --size scaled --seeds 0 --trainers ours:topk ours:batchtopk \\
        ours:jumprelu ours:relu ours:gumbel_topk ours:matryoshka saelens:batchtopk@budget \\
        saelens:matryoshka@budget saelens:jumprelu@budget saelens:standard@budget saelens:topk@budget
    python benchmarks/bench_synth.py --smoke                     # everything, tiny, under a minute
    python benchmarks/bench_synth.py --size scaled --lr-sweep     # how BUDGET_LR was chosen
    python benchmarks/bench_synth.py --size scaled --calibrate    # how PENALTIES were chosen
    python benchmarks/bench_synth.py --size scaled --trainers ours:batchtopk \\
        --ours-params '{"aux_k": null}'                          # a controlled run
    python benchmarks/bench_synth.py --size scaled --trainers ours:relu --penalty 0.16 \\
        --ours-params '{"tied": false}' --patch constant-lr       # a controlled run of our training
    python benchmarks/bench_synth.py --curve --size 16k --device cuda --json synth.json
        # the GPU step (gpu_check.py --only synth): BatchTopK and Matryoshka at doubling budgets from 1M
        # samples, drawn on the GPU, until the published F1
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.evaluate import core_metrics, ground_truth_recovery


@dataclass(frozen=True)
class Size:
    num_features: int
    hidden_dim: int
    roots: int
    width: int
    k: int
    rows: int
    eval_rows: int


SIZES = {
    "16k": Size(16_384, 768, 128, 4096, 25, rows=200_000, eval_rows=50_000),
    "scaled": Size(4096, 256, 32, 1024, 16, rows=204_800, eval_rows=20_000),
    "smoke": Size(512, 64, 4, 128, 8, rows=8192, eval_rows=2048),
}

MATRYOSHKA_FRACTIONS = (1 / 32, 1 / 8, 1 / 2)
"""Prefixes of the Matryoshka dictionaries: SynthSAEBench's inner widths 128, 512, 2,048 of 4,096."""

SAELENS_BATCH = 1024
"""The benchmark runner's batch (also dictionary_learning's here)."""

RECOMMENDED_LR = 3e-4
"""SynthSAEBench's rate for 200M samples."""

BUDGET_LR = {
    "scaled": dict.fromkeys(("batchtopk", "matryoshka", "jumprelu", "standard", "topk"), 1e-2),
    "16k": dict.fromkeys(("batchtopk", "matryoshka", "jumprelu", "standard", "topk"), 1e-2),
    "smoke": dict.fromkeys(("batchtopk", "matryoshka", "jumprelu", "standard", "topk"), 1e-2),
}
"""SAELens's rate per architecture for the size's budget: the best F1 of ``--lr-sweep`` (seed 0) over 3e-4,
1e-3, 3e-3, 1e-2 and 3e-2 on ``scaled`` (1e-2 for all five there); ``16k`` and ``smoke`` take the same rates
without a sweep of their own."""

PENALTIES = {
    "scaled": {"ours:relu": 0.115, "ours:jumprelu": 3.9e-3, "saelens:standard": 1.9, "dl:standard": 6.5},
    "16k": {"ours:relu": 3e-3, "ours:jumprelu": 3e-3, "saelens:standard": 1.0, "dl:standard": 0.1},
    "smoke": {"ours:relu": 3e-3, "ours:jumprelu": 3e-3, "saelens:standard": 1.0, "dl:standard": 0.1},
}
"""Sparsity weights that give L0 ~ k at the size's budget, seed 0 (``--calibrate``). ``scaled``'s ``ours:relu`` was
calibrated when the L1 term divided by the raw row's norm (the package at 49363a1); it now divides by the
standardised row's (``sqrt(d)`` under ``normalize=True``), so that weight needs ``--calibrate`` again."""

STREAM_SEED = 0
"""The training stream is drawn once, from this seed; the evaluation rows from the next one."""

OURS = {
    "topk": dict(activation="topk"),
    "batchtopk": dict(activation="batchtopk"),
    "jumprelu": dict(activation="jumprelu"),
    "relu": dict(activation="relu"),
    "gumbel_topk": dict(activation="gumbel_topk"),
    "matryoshka": dict(activation="batchtopk", matryoshka=MATRYOSHKA_FRACTIONS),
}
SAELENS = ("batchtopk", "matryoshka", "jumprelu", "standard", "topk")
DL = ("batchtopk", "matryoshka", "topk", "jumprelu", "standard")


def default_trainers():
    return ([f"ours:{name}" for name in OURS]
            + [f"saelens:{name}@{lr}" for name in SAELENS for lr in ("3e-4", "budget")]
            + [f"dl:{name}" for name in DL])


# ----------------------------------------------------------------------------- data, built once and cached


def model_config(size: Size):
    from sae_lens.synthetic import (
        FoldedNormalMagnitudeConfig,
        HierarchyConfig,
        LinearMagnitudeConfig,
        LowRankCorrelationConfig,
        OrthogonalizationConfig,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )

    return SyntheticModelConfig(
        num_features=size.num_features,
        hidden_dim=size.hidden_dim,
        firing_probability=ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=5e-4),
        hierarchy=HierarchyConfig(total_root_nodes=size.roots, branching_factor=4, max_depth=3,
                                  mutually_exclusive_portion=1.0, mutually_exclusive_min_depth=0,
                                  compensate_probabilities=True, scale_children_by_parent=True),
        orthogonalization=OrthogonalizationConfig(num_steps=100, lr=3e-4),
        correlation=LowRankCorrelationConfig(rank=25, correlation_scale=0.1),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=0.5,
        seed=42,
    )


MARKER = "bench_synth.json"
"""Written last into every cache directory this script fills; a directory without it is not ours."""


def _cache_dir(root: Path, payload: dict) -> Path:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    path = root / f"{payload['kind']}-{digest}"
    if path.exists() and any(path.iterdir()) and not (path / MARKER).exists():
        raise SystemExit(f"{path} exists and was not written by bench_synth.py (no {MARKER}); choose another --cache.")
    return path


def _finish(path: Path, payload: dict):
    _atomic_write(path / MARKER, lambda f: f.write(json.dumps(payload, sort_keys=True).encode()))


def _atomic_write(target: Path, write):
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as handle:
        try:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            os.unlink(handle.name)
            raise
    os.replace(handle.name, target)


def load_or_build_model(size: Size, root: Path):
    from sae_lens.synthetic import SyntheticModel

    config = model_config(size)
    payload = {"kind": "model", "config": config.to_dict()}
    path = _cache_dir(root, payload)
    if (path / MARKER).exists():
        return SyntheticModel.load_from_disk(path)
    start = time.perf_counter()
    print(f"building the synthetic model ({size.num_features} features in {size.hidden_dim} dims) ...", flush=True)
    model = SyntheticModel(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path)
    _finish(path, payload)
    print(f"built and cached in {time.perf_counter() - start:.0f} s: {path}", flush=True)
    return model


@torch.no_grad()
def _draw(model, n_rows, seed, chunk=4096, codes=True):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        hidden, active = [], []
        for start in range(0, n_rows, chunk):
            acts = model.activation_generator.sample(min(chunk, n_rows - start))
            hidden.append(model.feature_dict(acts).cpu().numpy().astype(np.float32))
            if codes:
                active.append(sp.csr_matrix(acts.cpu().numpy()))
    return np.concatenate(hidden), (sp.vstack(active).tocsr() if codes else None)


def load_or_draw_rows(model, size: Size, rows: int, eval_rows: int, root: Path):
    """The training stream and the evaluation rows with their true activations, drawn once.

    The stream is drawn in chunks from one seed, so a shorter stream is a prefix of a longer one: a
    cached stream at least as long as asked for is reused (its first ``rows`` rows), a shorter one is
    replaced by a new draw.
    """
    payload = {"kind": "rows", "config": model.cfg.to_dict(), "eval_rows": eval_rows, "seed": STREAM_SEED}
    path = _cache_dir(root, payload)
    marker = path / MARKER
    cached = json.loads(marker.read_text()).get("rows", 0) if marker.exists() else 0
    if cached < rows:
        start = time.perf_counter()
        print(f"drawing {rows:,} training and {eval_rows:,} evaluation rows ...", flush=True)
        X_train, _ = _draw(model, rows, STREAM_SEED)
        _atomic_write(path / "train.npy", lambda f: np.save(f, X_train))
        if not (path / "eval_acts.npz").exists() or not marker.exists():
            X_eval, eval_acts = _draw(model, eval_rows, STREAM_SEED + 1)
            _atomic_write(path / "eval.npy", lambda f: np.save(f, X_eval))
            _atomic_write(path / "eval_acts.npz", lambda f: sp.save_npz(f, eval_acts))
        _finish(path, {**payload, "rows": rows})
        print(f"drawn and cached in {time.perf_counter() - start:.0f} s: {path}", flush=True)
    X_train = np.load(path / "train.npy", mmap_mode="r")[:rows]
    return X_train, np.load(path / "eval.npy"), sp.load_npz(path / "eval_acts.npz")


# ----------------------------------------------------------------------------- fitted models behind one face


class Fitted:
    """What evaluate needs: ``transform``, ``reconstruct`` and ``components_`` (atoms in input space)."""

    def __init__(self, encode, decode, components, batch=None):
        self._encode, self._decode, self.components_, self._batch = encode, decode, components, batch
        self._cache = None

    def _pass(self, X):
        """Codes and reconstructions from one pass (a batch-dependent encoder sees the same batches once)."""
        if self._cache is not None and self._cache[0] is X:
            return self._cache[1:]
        step = self._batch or len(X)
        codes, recon = [], []
        with torch.no_grad():
            for start in range(0, len(X), step):
                z = self._encode(torch.from_numpy(np.array(X[start : start + step], dtype=np.float32)))
                recon.append(self._decode(z).numpy())
                codes.append(sp.csr_matrix(z.numpy()))
        self._cache = (X, sp.vstack(codes).tocsr(), np.concatenate(recon))
        return self._cache[1:]

    def transform(self, X):
        return self._pass(X)[0]

    def reconstruct(self, X):
        return self._pass(X)[1]


class OursFitted:
    def __init__(self, estimator):
        self.estimator = estimator
        self.components_ = np.asarray(estimator.components_)

    def transform(self, X):
        return self.estimator.transform(X)

    def reconstruct(self, X):
        return self.estimator.reconstruct(X)


def _batches(X, batch, device="cpu"):
    for start in range(0, len(X) - batch + 1, batch):
        yield torch.from_numpy(np.array(X[start : start + batch], dtype=np.float32)).to(device)  # a writable copy


def fit_ours(name, X, size, seed, overrides):
    params = dict(n_latents=size.width, k=size.k, max_epochs=1, validation_fraction=0.0, sparse_output=True,
                  device="cpu", random_state=seed, **OURS[name])
    params.update(overrides)
    sae = SparseAutoencoderTransformer(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dead-latent warnings: the table reports them
        sae.fit(np.asarray(X))
    return OursFitted(sae)


def _saelens_config(name, size, penalty):
    import sae_lens

    common = dict(d_in=size.hidden_dim, d_sae=size.width)
    if name == "batchtopk":
        return sae_lens.BatchTopKTrainingSAEConfig(k=size.k, **common)
    if name == "topk":
        return sae_lens.TopKTrainingSAEConfig(k=size.k, **common)
    if name == "matryoshka":
        widths = [round(f * size.width) for f in MATRYOSHKA_FRACTIONS]
        return sae_lens.MatryoshkaBatchTopKTrainingSAEConfig(k=size.k, matryoshka_widths=widths,
                                                             use_matryoshka_aux_loss=True, **common)
    if name == "jumprelu":
        return sae_lens.JumpReLUTrainingSAEConfig(jumprelu_sparsity_loss_mode="quadratic", target_l0=size.k, **common)
    if name == "standard":
        return sae_lens.StandardTrainingSAEConfig(l1_coefficient=penalty, **common)
    raise ValueError(f"unknown SAELens architecture {name!r}")


def fit_saelens(name, X, size, seed, lr, penalty=None):
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.registry import get_sae_training_class
    from sae_lens.training.sae_trainer import SAETrainer

    config = _saelens_config(name, size, penalty)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sae = get_sae_training_class(config.architecture())[0](config)
        n_samples = (len(X) // SAELENS_BATCH) * SAELENS_BATCH
        trainer_config = SAETrainerConfig(total_training_samples=n_samples, train_batch_size_samples=SAELENS_BATCH,
                                          lr=lr, lr_end=lr, device="cpu", logger=LoggingConfig(log_to_wandb=False))
        SAETrainer(cfg=trainer_config, sae=sae, data_provider=_batches(X, SAELENS_BATCH)).fit()
    sae.eval()
    return Fitted(sae.encode, sae.decode, sae.W_dec.detach().numpy().copy(), batch=SAELENS_BATCH)


def _dictionary_learning_trainers():
    """dictionary_learning's trainer modules without its package ``__init__`` (which imports nnsight)."""
    if "dictionary_learning" not in sys.modules:
        spec = importlib.util.find_spec("dictionary_learning")
        if spec is None:
            raise SystemExit("dictionary_learning is not installed: pip install --no-deps dictionary-learning")
        package = types.ModuleType("dictionary_learning")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["dictionary_learning"] = package
    from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer
    from dictionary_learning.trainers.jumprelu import JumpReluTrainer
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKTrainer
    from dictionary_learning.trainers.standard import StandardTrainer
    from dictionary_learning.trainers.top_k import TopKTrainer

    return {"batchtopk": BatchTopKTrainer, "matryoshka": MatryoshkaBatchTopKTrainer, "topk": TopKTrainer,
            "jumprelu": JumpReluTrainer, "standard": StandardTrainer}


def fit_dl(name, X, size, seed, lr=None, penalty=None):
    trainer_class = _dictionary_learning_trainers()[name]
    steps = len(X) // SAELENS_BATCH
    params = dict(steps=steps, activation_dim=size.hidden_dim, dict_size=size.width, layer=0, lm_name="synthetic",
                  seed=seed, device="cpu", warmup_steps=min(1000, steps // 20))
    if lr is not None:
        params["lr"] = lr
    if name in ("batchtopk", "matryoshka", "topk"):
        params.update(k=size.k, threshold_start_step=min(1000, steps // 10))
    if name == "matryoshka":
        fractions = list(MATRYOSHKA_FRACTIONS)
        params["group_fractions"] = [fractions[0]] + list(np.diff(fractions + [1.0]))
    if name in ("jumprelu", "standard"):
        params["sparsity_warmup_steps"] = min(2000, steps // 5)
    if name == "jumprelu":
        params["target_l0"] = float(size.k)
    if name == "standard":
        params["l1_penalty"] = penalty
    with torch.random.fork_rng():
        trainer = trainer_class(**params)
        for step, batch in enumerate(_batches(X, SAELENS_BATCH)):
            trainer.update(step, batch)
    ae = trainer.ae.eval()
    atoms = ae.W_dec if hasattr(ae, "W_dec") else ae.decoder.weight.T
    return Fitted(ae.encode, ae.decode, atoms.detach().numpy().copy())


def fit(trainer, X, size, seed, size_name, overrides=None, penalty=None):
    group, _, rest = trainer.partition(":")
    name, _, lr = rest.partition("@")
    if penalty is None:
        penalty = PENALTIES[size_name].get(f"{group}:{name}")
    if group == "ours":
        return fit_ours(name, X, size, seed, dict(overrides or {}, **({"l1_coef": penalty} if penalty else {})))
    if group == "saelens":
        rate = BUDGET_LR[size_name][name] if lr == "budget" else float(lr or RECOMMENDED_LR)
        return fit_saelens(name, X, size, seed, rate, penalty)
    if group == "dl":
        rate = BUDGET_LR[size_name][name] if lr == "budget" else (float(lr) if lr else None)
        return fit_dl(name, X, size, seed, rate, penalty)
    raise SystemExit(f"unknown trainer {trainer!r}: use ours:NAME, saelens:NAME@RATE or dl:NAME")


# ----------------------------------------------------------------------------- controlled changes to our training


def _constant_after_warmup(self, step):
    """SAELens's schedule: the rate stays at its peak after the warmup instead of decaying (cosine) to 0."""
    return (step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0


def _mean_over_batch(numerator, denominator):
    """Replaces ``_model.row_mean_ratio``: the loss terms divided by the batch's mean ``||x||^2`` (or ``||x||``)
    instead of each row by its own, so every row weighs alike, as in SAELens's MSE and L1."""
    return numerator.mean() / denominator.mean().clamp_min(torch.finfo(denominator.dtype).tiny)


def _decoder_norm_weighted_l1(model):
    """SAELens's standard SAE: the L1 term weighs each code by its decoder row's norm (run it with
    ``unit_norm_decoder=False``, so that the norm is free). The loss reads the codes of the training output, so
    they are scaled there, after the reconstruction; which latents fire is unchanged."""
    forward = model.SparseAutoencoder.forward

    def weighted(self, x):
        output = forward(self, x)
        if self.training and isinstance(output.codes, torch.Tensor):
            output = output._replace(codes=output.codes * self.decoder_weight.norm(dim=1))
        return output

    model.SparseAutoencoder.forward = weighted


PATCHES = {
    "constant-lr": lambda training, model: setattr(training.WarmupCosine, "__call__", _constant_after_warmup),
    "batch-normalised-loss": lambda training, model: setattr(model, "row_mean_ratio", _mean_over_batch),
    "decoder-norm-l1": lambda training, model: _decoder_norm_weighted_l1(model),
}
"""Monkeypatches for controlled runs (``--patch``): the training code itself is not changed by this script."""


def apply_patches(names):
    from sklearn_sae import _model, _training

    for name in names:
        PATCHES[name](_training, _model)


# ----------------------------------------------------------------------------- scoring and the table


SCORES = ["f1", "mcc", "uniqueness", "precision", "recall", "explained_variance", "l0", "dead"]


def score(fitted, X_eval, true_atoms, eval_acts):
    codes = fitted.transform(X_eval)
    recovery = ground_truth_recovery(true_atoms, fitted.components_, codes=codes, true_codes=eval_acts,
                                     signed=False).attrs
    core = core_metrics(fitted, X_eval, codes=codes).iloc[0]
    return {"f1": recovery["latent_f1"], "mcc": recovery["mcc_hungarian_abs"], "uniqueness": recovery["uniqueness"],
            "precision": recovery["latent_precision"], "recall": recovery["latent_recall"],
            "explained_variance": float(core["explained_variance"]), "l0": float(core["l0"]),
            "dead": int(round((1 - core["alive"]) * len(fitted.components_)))}


def run_one(trainer, X, size, seed, size_name, X_eval, true_atoms, eval_acts, overrides=None, penalty=None):
    start = time.perf_counter()
    fitted = fit(trainer, X, size, seed, size_name, overrides, penalty)
    seconds = time.perf_counter() - start
    return {"trainer": trainer, "seed": seed, "seconds": seconds, **score(fitted, X_eval, true_atoms, eval_acts)}


FIELDS = ["size", "rows", "trainer", "label", "seed", "seconds"] + SCORES


def _append(path, rows):
    """Append result rows to a CSV this script writes; an existing file must have its header."""
    if path is None:
        return
    path = Path(path)
    exists = path.exists() and path.stat().st_size > 0
    if exists:
        with open(path, newline="") as handle:
            if next(csv.reader(handle), None) != FIELDS:
                raise SystemExit(f"{path} exists and is not a bench_synth.py result file; choose another --out.")
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if not exists:
            writer.writeheader()
        writer.writerows(rows)


def summarise(rows):
    """Markdown: mean [min, max] over seeds of each score, per trainer (and label)."""
    groups = {}
    for row in rows:
        groups.setdefault((row["trainer"], row.get("label", "")), []).append(row)
    lines = ["| trainer | seeds | F1 | MCC | uniqueness | precision | recall | expl. var. | L0 | dead | s / fit |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (trainer, label), group in groups.items():
        cells = []
        for key in SCORES + ["seconds"]:
            values = np.array([float(row[key]) for row in group])
            digits = 0 if key in ("dead", "seconds") else (1 if key == "l0" else 3)
            cells.append(f"{values.mean():.{digits}f} [{values.min():.{digits}f}, {values.max():.{digits}f}]")
        name = f"{trainer} {label}".strip()
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- choosing the budget's rate and penalties


def lr_sweep(args, size, X, X_eval, true_atoms, eval_acts, rates=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2)):
    """SAELens's trainers at several constant rates, seed 0: the best F1 per architecture is its budget rate."""
    rows, best = [], {}
    for name in SAELENS:
        for lr in rates:
            row = run_one(f"saelens:{name}@{lr:g}", X, size, 0, args.size, X_eval, true_atoms, eval_acts)
            rows.append(row)
            print(f"{row['trainer']}: F1 {row['f1']:.3f} MCC {row['mcc']:.3f} L0 {row['l0']:.1f} dead {row['dead']}",
                  flush=True)
            if name not in best or row["f1"] > best[name][1]:
                best[name] = (lr, row["f1"])
    print("BUDGET_LR:", json.dumps({name: lr for name, (lr, _) in best.items()}))
    return rows


def calibrate(args, size, X, X_eval, true_atoms, eval_acts, fits=6):
    """Bisection on log(penalty) for L0 = k on the evaluation rows, seed 0, for every penalty-set trainer."""
    found = {}
    brackets = {"ours:relu": (1e-2, 1.0), "ours:jumprelu": (1e-4, 1e-1), "saelens:standard@budget": (0.1, 30.0),
                "dl:standard": (1e-3, 10.0)}
    for trainer, (low, high) in brackets.items():
        if args.trainers and trainer not in args.trainers:
            continue
        best = None
        for _ in range(fits):
            middle = math.sqrt(low * high)
            overrides = args.ours_params if trainer.startswith("ours:") else None
            row = run_one(trainer, X, size, 0, args.size, X_eval, true_atoms, eval_acts, overrides, penalty=middle)
            print(f"{trainer} penalty {middle:.3g}: L0 {row['l0']:.1f} F1 {row['f1']:.3f}", flush=True)
            if best is None or abs(row["l0"] - size.k) < abs(best[1] - size.k):
                best = (middle, row["l0"])
            low, high = (middle, high) if row["l0"] > size.k else (low, middle)
        found[trainer.split("@")[0]] = best
    print(json.dumps({name: {"penalty": p, "l0": l0} for name, (p, l0) in found.items()}, indent=1))


# ----------------------------------------------------------------------------- the budget curve (the GPU step)


PUBLISHED_F1 = {"ours:batchtopk": 0.732, "ours:matryoshka": 0.879}
"""SynthSAEBench-16k's F1 after 200M samples (L0 25, width 4,096): BatchTopK and Matryoshka (BatchTopK) in the
table of SAELens's ``docs/synth_sae_bench.md``."""

MAX_CALL_ROWS = 2**20
"""Rows drawn and given to one ``partial_fit`` call at most (3 GiB of float32 at 768 dimensions)."""


def _checkpoints(first, most):
    """Samples seen at which the curve is scored: ``first``, doubling, up to ``most`` (included)."""
    points = [first]
    while points[-1] < most:
        points.append(min(2 * points[-1], most))
    return points


def _device_name(device):
    return torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({os.cpu_count()} cores)"


def budget_curve(args, size, trainers):
    """Ours at the size's setting, trained on a stream drawn chunk by chunk on ``--device``, scored at doubling
    budgets until its F1 reaches the published one (or ``--max-samples``, or ``--time-limit``): what the GPU
    step of ``gpu_check.py`` runs.

    ``partial_fit`` trains a chunk at a time: a run of unknown length, so its rate warms up and then stays
    constant (``fit``'s cosine decay needs the length). The samples/s count ``partial_fit`` alone; drawing the
    stream is timed apart. The figures are rewritten after every scored budget, so a run cut off keeps them.
    """
    from sae_lens.synthetic import SyntheticModel

    start = time.perf_counter()
    deadline = start + args.time_limit
    model = SyntheticModel(model_config(size), device=args.device)
    figures = {"device": args.device, "device_name": _device_name(args.device), "size": args.size,
               "features": size.num_features, "dims": size.hidden_dim, "width": size.width, "k": size.k,
               "build_s": time.perf_counter() - start, "trainers": {}}
    X_eval, eval_acts = _draw(model, args.eval_rows or size.eval_rows, STREAM_SEED + 1)
    true_atoms = model.feature_dict.feature_vectors.detach().cpu().numpy()
    figures["eval_rows"] = len(X_eval)
    print(f"{args.size} on {figures['device_name']}: model built in {figures['build_s']:.0f} s", flush=True)
    points = _checkpoints(args.first_samples, args.max_samples)
    draw_chunk = 2**16 if args.device == "cuda" else 4096  # the true activations of a chunk are dense: 4 GiB at 16k
    for index, trainer in enumerate(trainers):
        name = trainer.partition(":")[2]
        params = dict(n_latents=size.width, k=size.k, sparse_output=True, device=args.device, random_state=0,
                      **OURS[name])
        params.update(args.ours_params)
        sae = SparseAutoencoderTransformer(**params)
        record = {"published_f1": PUBLISHED_F1.get(trainer), "reached_at": None, "stopped": "max-samples",
                  "samples_per_s": None, "draw_samples_per_s": None, "curve": []}
        figures["trainers"][trainer] = record
        began = time.perf_counter()
        share_end = began + (deadline - began) / (len(trainers) - index)
        seen = train_s = draw_s = 0.0
        for point in points:
            rate = seen / (time.perf_counter() - began) if seen else None  # drawing and scoring included
            if rate and time.perf_counter() + (point - seen) / rate > share_end:
                record["stopped"] = "time-limit"
                break
            while seen < point:
                rows = int(min(point - seen, MAX_CALL_ROWS))
                tick = time.perf_counter()
                X, _ = _draw(model, rows, STREAM_SEED + 2 + int(seen), chunk=draw_chunk, codes=False)
                draw_s += time.perf_counter() - tick
                tick = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # dead latents early on: the curve reports them
                    sae.partial_fit(X)
                train_s += time.perf_counter() - tick
                seen += rows
            scores = score(OursFitted(sae), X_eval, true_atoms, eval_acts)
            record["curve"].append({"samples": int(seen), "train_s": train_s, **scores})
            record["samples_per_s"], record["draw_samples_per_s"] = seen / train_s, seen / draw_s
            print(f"{trainer}: {int(seen):,} samples, F1 {scores['f1']:.3f} MCC {scores['mcc']:.3f} L0 "
                  f"{scores['l0']:.1f} dead {scores['dead']}; {seen / train_s:,.0f} samples/s", flush=True)
            _write_json(args.json, figures)
            if record["published_f1"] is not None and scores["f1"] >= record["published_f1"]:
                record["reached_at"], record["stopped"] = int(seen), "reached"
                break
        _write_json(args.json, figures)
    return figures


def _write_json(path, figures):
    if path is not None:
        _atomic_write(Path(path), lambda handle: handle.write(json.dumps(figures, indent=1).encode()))


# ----------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="scaled")
    parser.add_argument("--smoke", action="store_true", help="--size smoke, every trainer, one seed")
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: the size's)")
    parser.add_argument("--eval-rows", type=int, default=None, help="evaluation rows (default: the size's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--trainers", nargs="+", default=None, help="group:name[@rate]; default: all")
    parser.add_argument("--ours-params", type=json.loads, default={},
                        help="JSON of estimator parameters for the ours:* trainers (controlled runs)")
    parser.add_argument("--label", default="", help="a label for these rows in the CSV and the table")
    parser.add_argument("--penalty", type=float, default=None,
                        help="sparsity weight for the penalty-set trainers of this run, instead of PENALTIES")
    parser.add_argument("--patch", nargs="+", default=[], choices=sorted(PATCHES),
                        help="monkeypatch our training for a controlled run (see PATCHES)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "sklearn-sae" / "bench_synth")
    parser.add_argument("--out", default=None, help="CSV to append the rows to")
    parser.add_argument("--lr-sweep", action="store_true")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--summarise", default=None, metavar="CSV",
                        help="print the table of a result file and exit (no data needed)")
    parser.add_argument("--curve", action="store_true",
                        help="the budget curve of ours:batchtopk and ours:matryoshka on a stream drawn on --device "
                             "(the GPU step): F1 at doubling budgets until the published F1")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="--curve's device")
    parser.add_argument("--first-samples", type=int, default=2**20, help="--curve's first scored budget")
    parser.add_argument("--max-samples", type=int, default=200_000_000, help="--curve's largest budget")
    parser.add_argument("--time-limit", type=float, default=420.0,
                        help="seconds --curve may take; a budget that would end past it is not started")
    parser.add_argument("--json", default=None, help="--curve's figures (JSON), rewritten after every budget")
    args = parser.parse_args(argv)
    if args.summarise:
        with open(args.summarise, newline="") as handle:
            print(summarise(list(csv.DictReader(handle))))
        return
    if args.smoke:
        args.size = "smoke"
    apply_patches(args.patch)
    size = SIZES[args.size]
    if args.curve:
        budget_curve(args, size, args.trainers or list(PUBLISHED_F1))
        return
    rows, eval_rows = args.rows or size.rows, args.eval_rows or size.eval_rows

    model = load_or_build_model(size, args.cache)
    X, X_eval, eval_acts = load_or_draw_rows(model, size, rows, eval_rows, args.cache)
    true_atoms = model.feature_dict.feature_vectors.detach().numpy()
    firing = np.sort(np.asarray((eval_acts > 0).mean(axis=0)).ravel())[::-1]
    print(f"{args.size}: {size.num_features} features in {size.hidden_dim} dims, width {size.width}, k {size.k}; "
          f"{len(X):,} training rows, {len(X_eval):,} evaluation rows; true L0 {firing.sum():.1f} "
          f"({firing[:size.width].sum():.1f} over the {size.width} most frequent features)", flush=True)

    if args.lr_sweep:
        print(summarise(lr_sweep(args, size, X, X_eval, true_atoms, eval_acts)))
        return
    if args.calibrate:
        calibrate(args, size, X, X_eval, true_atoms, eval_acts)
        return
    results = []
    for trainer in args.trainers or default_trainers():
        for seed in args.seeds:
            overrides = args.ours_params if trainer.startswith("ours:") else None
            row = run_one(trainer, X, size, seed, args.size, X_eval, true_atoms, eval_acts, overrides, args.penalty)
            row.update(size=args.size, rows=len(X), label=args.label)
            results.append(row)
            _append(args.out, [row])
            print(f"{trainer} {args.label} seed {seed}: F1 {row['f1']:.3f} MCC {row['mcc']:.3f} "
                  f"uniq {row['uniqueness']:.3f} EV {row['explained_variance']:.3f} L0 {row['l0']:.1f} "
                  f"dead {row['dead']} in {row['seconds']:.0f} s", flush=True)
    print()
    print(summarise(results))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    with contextlib.suppress(BrokenPipeError):
        main()
