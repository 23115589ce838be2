"""SparseAutoencoderTransformer: the scikit-learn face of the package."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.history import History

from . import _interop, _persistence
from ._activations import GumbelTopK, JumpReLU, ReLU, TopK, TopKSelection, schedule_length, schedule_start
from ._blocks import block_rows_for, check_magnitude, check_on_disk, is_on_disk, iter_row_blocks
from ._checkpoint import training_fingerprint
from ._defaults import DEAD_WARNING_FRACTION
from ._device import resolve_device
from ._distributed import DataParallel
from ._incremental import incremental_run, start_run, train_one_pass
from ._params import (
    MODEL_PARAMS,
    OUTPUT_PARAMS,
    PARAMETER_CONSTRAINTS,
    changed_params,
    model_spec,
    renamed_params,
    resolve_n_latents,
    training_settings,
)
from ._rows import InMemoryRows, OnDiskRows
from ._training import SingleProcess, fitted_net, release_training_state, train_net
from ._warnings import warn_user
from .metrics import FVUTotals

__all__ = ["SparseAutoencoderTransformer"]


class SparseAutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Sparse autoencoder (SAE) that turns embeddings into sparse, non-negative codes.

    The model standardises each input row (``normalize=True``), subtracts a
    learned pre-bias, encodes with a linear map and a sparsifying activation,
    and decodes with a linear map that is the encoder's transpose by default
    (``tied=True``)::

        x_norm, mu, sigma = layer_norm_no_affine(x)
        h     = activation((x_norm - pre_bias) @ W_enc.T + b_lat)
        x_hat = (h @ W_dec + pre_bias) * sigma + mu

    It is trained through skorch with Adam, linear LR warmup then cosine
    decay per batch, gradient-norm clipping and optional bfloat16 mixed
    precision, minimising the normalised MSE ``mean ||x_hat - x||^2 / ||x||^2``
    plus the activation's sparsity term: ``l1_coef`` times the L1 norm of the
    codes over ``||x_norm||`` (``"relu"``), ``l0_coef`` times their L0
    (``"jumprelu"``), none for the top-k activations. A fitted model is a
    snapshot: ``set_params`` after ``fit`` changes nothing it computes, saves
    or exports until the next ``fit``. Read more in the :ref:`User Guide
    <parameters>`.

    Parameters
    ----------
    n_latents : int, default=None
        Number of latents (dictionary atoms). ``None`` sizes the dictionary
        to the data: ``4 * n_features``, capped (but for ``"relu"``) so that
        an average latent fires on 128 training rows an epoch, and at least
        ``k``. See :ref:`param-n-latents`.
    activation : {"topk", "gumbel_topk", "batchtopk", "jumprelu", "relu"}, default="topk"
        How codes become sparse: ``"topk"`` keeps the ``k`` largest
        pre-activations of each row; ``"gumbel_topk"`` is Top-K with Gumbel
        noise in the selection early in training; ``"batchtopk"`` keeps the
        ``k * batch_size`` largest of a training batch and uses one learned
        threshold at inference; ``"jumprelu"`` has a learned threshold per
        latent and an L0 penalty; ``"relu"`` an L1 penalty. See
        :ref:`choosing-an-activation`.
    k : int, default=32
        Active latents per row: exactly (at most, after the ReLU) for
        ``"topk"`` and ``"gumbel_topk"``, on average over a training batch
        for ``"batchtopk"``. ``"jumprelu"`` sizes ``n_latents=None`` and
        ``dead_window="auto"`` with it (or with ``target_l0``). Ignored by
        ``"relu"``. At most ``n_latents``.
    k_start : int, "auto" or None, default="auto"
        ``"topk"`` and ``"batchtopk"``: latents kept per row (on average for
        ``"batchtopk"``) at the first training batch, falling linearly to
        ``k`` over the learning-rate warmup. ``"auto"`` is ``min(4 * k,
        n_latents)`` for ``"topk"`` with ``lr="auto"`` (and a warmup), else
        ``k``; ``None`` keeps ``k`` throughout. See :ref:`param-k-start`.
    l1_coef : float, default=None
        Weight of the L1 penalty on the codes. ``None`` is 5e-3 for
        ``"relu"`` and 0 for the others. See :ref:`param-l1-coef`.
    l0_coef : float, default=None
        ``"jumprelu"`` only: weight of its L0 penalty (or of the quadratic
        pull towards ``target_l0``). ``None`` is 1e-3. To reach a given L0,
        set ``target_l0`` or search the weight with
        :func:`~sklearn_sae.calibration.calibrate_l1_coef`.
    target_l0 : int, default=None
        ``"jumprelu"`` only: the mean L0 a fit reaches: the sparsity term is
        ``2 / target_l0 * (L0_row - target_l0) ** 2`` (mean over rows), the
        thresholds start at that L0, and a fit (``partial_fit`` call) ends by
        one common threshold scale onto it on its validation rows (its rows).
        ``None`` penalises the L0 itself. See :ref:`param-target-l0`.
    normalize : bool, default=True
        Standardise each row to zero mean and unit variance before encoding
        and undo it after decoding.
    whiten : bool, default=False
        Whiten the standardised rows with the training rows' mean and
        covariance before encoding; the model is trained in the whitened
        space and keeps the whitening (``transform`` reads raw rows). See
        :ref:`whitening`.
    tied : bool, default=True
        Use one weight matrix for the encoder and (transposed) decoder.
    pre_bias_init : {"geometric_median", "mean", "zeros"}, default="geometric_median"
        Start ``pre_bias`` at the centre of up to 4,096 training rows (after
        normalisation).
    unit_norm_decoder : bool, default=True
        With ``tied=False``, keep every decoder atom at unit norm during
        training. Ignored when ``tied=True``.
    aux_k : int, "auto" or None, default="auto"
        The top-k activations' auxiliary loss against dead latents (AuxK):
        the ``aux_k`` most active dead latents also reconstruct the
        residual, weighted by ``aux_coef``. ``"auto"`` is ``8 * k``;
        ``None`` turns it off. Ignored by ``"relu"`` and ``"jumprelu"``.
        See :ref:`param-aux-k`.
    aux_coef : float or "auto", default="auto"
        Weight of AuxK. ``"auto"`` is 1/32.
    pre_act_coef : float, "auto" or None, default="auto"
        ``"jumprelu"`` only: weight of the pull of dead latents'
        pre-activations towards their thresholds. ``"auto"`` is 0.003;
        ``None`` turns it off. See :ref:`param-aux-k`.
    dead_window : int or "auto", default="auto"
        Training rows without firing after which a latent counts as dead
        (for AuxK and ``pre_act_coef``). ``"auto"`` is ``20 * n_latents /
        k``.
    tau_start, tau_end : float or "auto", default="auto", 1e-8
        ``"gumbel_topk"`` only: Gumbel temperature at the first training
        batch and from the end of the annealing on.
    anneal_steps : int, float or "auto", default="auto"
        ``"gumbel_topk"`` only: training batches over which the temperature
        falls linearly to ``tau_end``; a float in (0, 1] is a fraction of
        the fit's batches. With ``lr="auto"`` (and a warmup) ``"auto"`` is
        ``warmup_steps`` and ``tau_start="auto"`` 0.3, else 0.005 and 1. A
        fit that ends before it warns.
    gumbel_candidates : {"positive", "all"}, default="positive"
        ``"gumbel_topk"`` only: the noisy selection picks among positive
        pre-activations, or among all latents (``topk(z_pre / tau + g)``).
    lr : float or "auto", default="auto"
        Peak learning rate of Adam. ``"auto"``: ``0.12 * min(spread, 1) /
        sqrt(n_features)`` (0.2 for ``"gumbel_topk"`` and a ``k_start``),
        ``spread`` measured on the training rows, times ``sqrt(batch_size /
        256)`` for smaller batches and ``sqrt(1024 / n_latents)`` (<= 2.8) for
        Top-K below 1,024 latents; used: ``lr_``. See :ref:`param-lr`.
    batch_size : int, default=256
        Rows per training batch.
    max_epochs : int or "auto", default="auto"
        Passes over the training data. ``"auto"`` trains for at least 3,000
        optimiser steps and 10 epochs. See :ref:`param-training-length`.
    warmup_steps : int or float, default=0.05
        Batches of linear LR warmup; a float in [0, 1) is a fraction of all
        training batches.
    grad_clip : float, default=1.0
        Maximum L2 norm of the gradient; ``None`` turns clipping off.
    validation_fraction : float, default=0.1
        Fraction of the rows held out at random to score each epoch and for
        early stopping; they are never trained on or used for estimates.
    n_iter_no_change : int, "auto" or None, default="auto"
        Stop when the validation loss (the training loss without validation)
        has not improved by ``tol`` for this many epochs, and keep the best
        weights; with ``max_epochs="auto"`` the learning rate first decays to
        0 over a fifth of the steps run. ``"auto"`` is 10 with
        ``max_epochs="auto"``, else ``None``: train for ``max_epochs``.
        Applies to ``fit`` only. See :ref:`param-training-length`.
    tol : float, default=5e-3
        Smallest relative fall of the validation loss that counts as an
        improvement for ``n_iter_no_change``; 0 counts any fall.
    amp : bool or "auto", default=False
        Run the matrix multiplications in bfloat16; weights, loss and outputs
        stay float32. ``"auto"`` takes bfloat16 where the device multiplies
        it natively (CUDA compute capability 8.0 or above, a CPU with AMX or
        AVX-512 BF16), else float32, and records the choice as ``amp_``. See
        :ref:`speed-on-cpus`.
    device : str, default="auto"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or ``"auto"`` (a GPU when PyTorch
        sees one).
    sparse_output : bool, default=False
        Make :meth:`transform` return a ``scipy.sparse.csr_matrix``, built
        without the dense codes.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, the validation split, batch order and Gumbel
        noise; with an int, fits on the CPU are bit-identical. The caller's
        global torch RNG is left untouched.
    verbose : int, default=0
        0 is silent; 1 prints a table row per epoch (and a batch bar on a
        terminal); 2 always shows the batch bar.
    checkpoint_dir : str or path-like, default=None
        Directory in which :meth:`fit` saves its whole training state every
        epoch; a fit started with a checkpoint there resumes after its last
        complete epoch (bit-identical on the CPU with an int
        ``random_state``) or, if it finished, gives the model back. It must
        come from a fit of the same parameters and data. See
        :ref:`saving-and-resuming`.
    distributed : bool, default=False
        Train data-parallel over the processes of ``accelerate launch`` or
        ``torchrun`` (the ``scale`` extra); ``batch_size`` counts rows per
        process. See :ref:`large-data`.
    matryoshka : sequence of float, default=None
        Matryoshka training for the top-k activations: increasing fractions
        in (0, 1) of the dictionary, such as ``(1/16, 1/8, 1/4, 1/2)``,
        whose prefixes must each reconstruct the input too; the loss is the
        mean NMSE over the prefixes and the whole dictionary. ``None`` is a
        plain SAE. See :ref:`param-matryoshka`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the torch module.
    n_latents_ : int
        Number of latents actually used.
    lr_ : float or None
        The peak learning rate of the fit (or of the current
        :meth:`partial_fit` run): ``lr`` itself, or what ``lr="auto"``
        resolved to from the data. Saved and loaded with the model; None for
        a model imported from another library, which does not record it.
    amp_ : bool
        Whether the fitted model computes its matrix products in bfloat16:
        ``amp`` itself, or what ``amp="auto"`` chose for the device. Its
        :meth:`transform` computes the same way. Saved and loaded with the
        model.
    components_ : ndarray of shape (n_latents_, n_features_in_)
        Decoder atoms ``W_dec``, in the standardised space when ``normalize=True``:
        a read-only float32 copy of the module's weights, made on first access
        and kept until the weights change (``fit``, ``partial_fit``).
    history_ : skorch.history.History
        Per-epoch log, indexed as ``history_[:, "valid_nmse"]``. For the
        training rows (``train_``, accumulated over the epoch's batches as
        optimised) and the validation rows (``valid_``): ``loss``, ``nmse``,
        ``fvu``, ``l0`` (mean non-zeros per row), ``l1`` and ``dead_fraction``
        (latents zero on every row of the split that epoch; a fit whose last
        epoch leaves more than 10% of the latents dead on its training rows
        warns and says what to change); the same for
        each of ``fit``'s ``eval_sets``; Matryoshka adds ``fvu_level0``,
        ``nmse_level0``, ... (one per prefix) and JumpReLU ``sparsity`` (its
        L0 term, or the distance to ``target_l0``); also
        ``dur`` (seconds) and, per batch, ``event_lr``.
    n_iter_ : int
        Number of epochs run; each :meth:`partial_fit` call counts as one.
    n_steps_ : int
        Training batches run by the current sequence of :meth:`partial_fit`
        calls (sets its learning-rate warmup). Only after :meth:`partial_fit`.
    n_samples_seen_ : int
        Rows given to the current sequence of :meth:`partial_fit` calls.
        Only after :meth:`partial_fit`.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during :meth:`fit`, when ``X`` has string column names.

    See Also
    --------
    sklearn.decomposition.MiniBatchDictionaryLearning : sparse coding by optimisation rather than an encoder.
    sklearn.decomposition.PCA : dense linear codes.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae import SparseAutoencoderTransformer
    >>> X = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    >>> sae = SparseAutoencoderTransformer(n_latents=64, k=4, max_epochs=2, random_state=0, device="cpu")
    >>> codes = sae.fit_transform(X)
    >>> codes.shape
    (200, 64)
    >>> int((codes != 0).sum(axis=1).max()) <= 4
    True
    """

    _parameter_constraints: dict = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        n_latents=None,
        *,
        activation="topk",
        k=32,
        k_start="auto",
        l1_coef=None,
        l0_coef=None,
        target_l0=None,
        normalize=True,
        whiten=False,
        tied=True,
        pre_bias_init="geometric_median",
        unit_norm_decoder=True,
        aux_k="auto",
        aux_coef="auto",
        pre_act_coef="auto",
        dead_window="auto",
        tau_start="auto",
        tau_end=1e-8,
        anneal_steps="auto",
        gumbel_candidates="positive",
        lr="auto",
        batch_size=256,
        max_epochs="auto",
        warmup_steps=0.05,
        grad_clip=1.0,
        validation_fraction=0.1,
        n_iter_no_change="auto",
        tol=5e-3,
        amp=False,
        device="auto",
        sparse_output=False,
        random_state=None,
        verbose=0,
        checkpoint_dir=None,
        distributed=False,
        matryoshka=None,
    ):
        self.n_latents = n_latents
        self.activation = activation
        self.k = k
        self.k_start = k_start
        self.l1_coef = l1_coef
        self.l0_coef = l0_coef
        self.target_l0 = target_l0
        self.normalize = normalize
        self.whiten = whiten
        self.tied = tied
        self.pre_bias_init = pre_bias_init
        self.unit_norm_decoder = unit_norm_decoder
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.pre_act_coef = pre_act_coef
        self.dead_window = dead_window
        self.tau_start = tau_start
        self.tau_end = tau_end
        self.anneal_steps = anneal_steps
        self.gumbel_candidates = gumbel_candidates
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.warmup_steps = warmup_steps
        self.grad_clip = grad_clip
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.amp = amp
        self.device = device
        self.sparse_output = sparse_output
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.distributed = distributed
        self.matryoshka = matryoshka

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, eval_sets=None):
        """Train the autoencoder on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, at least 2; converted to float32. An
            ``h5py.Dataset`` or a ``numpy.memmap`` stays on disk: each epoch
            reads it once in chunk-aligned blocks, shuffled within a buffer
            of about 128 MiB, and whole blocks are held out for validation.
        y : None
            Ignored; present for API consistency.
        eval_sets : dict of str to array-like, default=None
            Extra data sets, such as a held-out test split, scored in eval
            mode at the end of every epoch. Each name ``N`` adds ``N_loss``,
            ``N_nmse``, ``N_fvu``, ``N_l0`` and ``N_dead_fraction`` to
            :attr:`history_`. The names ``"train"`` and ``"valid"`` are taken.

        Returns
        -------
        self : SparseAutoencoderTransformer
            The fitted estimator.

        Raises
        ------
        ValueError
            When the rows or parameters are refused, or training diverges
            (non-finite weights). The estimator then keeps the model it had
            before the call, if any.
        """
        with _kept_on_error(self):
            return self._fit(X, eval_sets)

    def _fit(self, X, eval_sets):
        if self.distributed and self.checkpoint_dir is not None:
            raise ValueError(
                "checkpoint_dir is not supported with distributed=True yet: the processes of a launch would "
                "each write and resume their own checkpoint. Set checkpoint_dir=None, or distributed=False."
            )
        rows, X = self._training_rows(X)
        params = self.get_params(deep=False)
        renamed_params(params, warn=True)  # the model is built from params: this only warns of deprecated uses
        # On disk whole blocks are held out, so the count is close rather than exact.
        n_train = self._check_n_train(rows.n_rows)
        n_latents = resolve_n_latents(params, rows.n_features, n_train=n_train)
        _warn_if_too_few_rows(n_train, n_latents)
        _warn_if_default_is_dense(params, n_latents, n_train=n_train)
        eval_tensors = self._validate_eval_sets(eval_sets)
        device = resolve_device(self.device)
        net = train_net(
            model_spec(params, rows.n_features, n_latents),
            rows,
            training_settings(params),
            seed=self._draw_seed(),
            strategy=DataParallel(device) if self.distributed else SingleProcess(device),
            eval_sets=eval_tensors,
            checkpoint_dir=self.checkpoint_dir,
            fingerprint=None if self.checkpoint_dir is None else training_fingerprint(params, X, eval_tensors),
        )
        _check_finite_weights(net)
        fitted_epoch = _restored_epoch(net)
        self._set_fitted(net, params)
        self.lr_ = float(net.lr)
        _warn_if_unhealthy(net, fitted_epoch)
        return self

    def _training_rows(self, X):
        """``(rows, X)``: the rows ``fit`` trains on, and ``X`` validated (an on-disk ``X`` stays as it is)."""
        if is_on_disk(X):
            rows = OnDiskRows(X)
            self.n_features_in_ = rows.n_features
            if hasattr(self, "feature_names_in_"):  # as validate_data(reset=True) does for unnamed columns
                del self.feature_names_in_
            return rows, X
        X = self._validated_rows(X, reset=True, ensure_min_samples=2)
        # A private copy: skorch keeps it for the whole fit, and the caller's array may change or be read-only.
        return InMemoryRows(torch.from_numpy(np.array(X, dtype=np.float32, order="C", copy=True))), X

    def _validated_rows(self, X, *, reset: bool, ensure_min_samples: int = 1, name: str = "X"):
        """``X`` as checked float32 rows: the one validation of every in-memory ``X`` a method trains or scores on.

        ``validate_data`` (shape, finiteness, feature count and names), then the magnitude check that keeps
        float32 sums finite.
        """
        X = validate_data(self, X, dtype=np.float32, reset=reset, ensure_min_samples=ensure_min_samples)
        return check_magnitude(X, name=name)

    def _draw_seed(self) -> int:
        """The fit's seed, drawn from ``random_state``: everything random in a fit derives from it."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train on ``X`` for one pass, continuing from earlier calls.

        For data that does not fit in memory, or arrives block by block (for
        example through ``dask_ml.wrappers.Incremental``). The first call
        builds the model and starts ``pre_bias`` at the centre of its rows;
        each later call continues the same run: the weights, Adam's state,
        the Gumbel temperature and the dead-latent counters all carry over,
        and ``X`` must have the same number of features. A call after
        :meth:`fit`, or on a loaded model, continues the fitted model with a
        fresh Adam state and schedule, since a fitted model does not keep
        them: the parameters that shape the model (``n_latents``,
        ``activation``, ``k``, ``normalize``, ``tied``, ...) stay the fitted
        ones, with a warning if ``set_params`` changed them, and the training
        parameters (``lr``, ``batch_size``, ``l1_coef``, ...) are the current
        ones.

        Learning rate: a run of unknown length cannot be laid out as ``fit``'s
        warmup and cosine decay, so ``partial_fit`` warms up linearly over
        ``warmup_steps`` batches and then stays at ``lr``. A float
        ``warmup_steps`` is a fraction of the batches of the run's first call.
        Lower ``lr`` yourself with ``set_params(lr=...)`` between calls if you
        want it to fall; the other parameters are fixed by the first call (a
        later call warns if they were changed, and trains as before).
        Likewise a float ``anneal_steps`` (``"gumbel_topk"``; ``"auto"`` is
        ``warmup_steps`` with ``lr="auto"``, else 0.005) is a fraction of the
        first call's batches. Pass ``anneal_steps`` as an int, a number of
        batches, to anneal over several calls; the temperature continues from
        call to call.

        Each call trains on every row it is given, once, in a shuffled order:
        ``max_epochs``, ``validation_fraction`` and ``n_iter_no_change`` do
        not apply. Score held-out rows with :meth:`score` between calls. With
        an int ``random_state``, the same sequence of calls gives the same
        model on the CPU, bit for bit, also across pickling; the caller's
        global torch RNG is left untouched. Between calls the model keeps
        Adam's state (twice the size of the weights, in a pickle too); a
        later :meth:`fit` drops it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows; converted to float32 and checked as in :meth:`fit`.
        y : None
            Ignored (dask-ml passes a placeholder).

        Returns
        -------
        self : SparseAutoencoderTransformer
            The estimator, trained one pass further.
        """
        with _kept_on_error(self):
            return self._partial_fit(X)

    def _partial_fit(self, X):
        if self.distributed:
            raise ValueError(
                "partial_fit does not train data-parallel: each process would continue on its own and the "
                "models would drift apart. Use fit with distributed=True, or partial_fit with distributed=False."
            )
        first_call = not hasattr(self, "net_")
        X = self._validated_rows(X, reset=first_call)
        device = resolve_device(self.device)
        net = self.net_ if not first_call else None
        if incremental_run(net) is None:
            net, params = self._start_incremental(X, device, fitted_net=net)
        else:  # a run in progress keeps what it started with; only lr may change between calls
            params = self._fitted_params_or_current()
            _warn_if_changed(
                params, self.get_params(deep=False), OUTPUT_PARAMS | {"lr"},
                "partial_fit continues the run with the values of its first call",
                "Only lr may change between calls; to train with the new values, call fit, or start a new run on a "
                "clone (sklearn.base.clone).",
            )
        train_one_pass(net, X, lr=self.lr, normalize=net.module_.normalize, device=device)
        _check_finite_weights(net)
        self._adopt_net(net)
        self._fitted_params = _snapshot({**params, "lr": self.lr})
        self.lr_ = float(incremental_run(net).lr)
        self.n_steps_ = incremental_run(net).n_steps
        self.n_samples_seen_ = incremental_run(net).n_samples_seen
        return self

    def _start_incremental(self, X, device, *, fitted_net=None):
        """The initialised net of a new run of ``partial_fit`` calls, from ``fitted_net``'s weights if given."""
        params = self.get_params(deep=False)
        renamed_params(params, warn=True)
        n_features = X.shape[1]
        if fitted_net is None:
            n_latents = resolve_n_latents(params, n_features)
            _warn_if_default_is_dense(params, n_latents)
            spec = model_spec(params, n_features, n_latents)
        else:
            # The fitted model is continued as it is (the parameters that shape it are the fit's); how it trains
            # (lr, batch size, penalties) follows the current parameters.
            fitted = self._fitted_params_or_current()
            _warn_if_changed(
                fitted, params, set(params) - MODEL_PARAMS, "partial_fit continues the fitted model",
                "To train a model with the new values from scratch, call fit.",
            )
            params = {**params, **{name: fitted[name] for name in MODEL_PARAMS}}
            # The fitted activation's start-up schedule, continued; without one, continuing must not start one.
            activation = fitted_net.module_.activation
            spec = model_spec(params, n_features, fitted_net.module_.n_latents,
                              anneal_steps=schedule_length(activation) or 0)
            spec = dataclasses.replace(spec, k_start=schedule_start(activation))  # resolved from lr at the fit
        lr = 1.0 if self.lr == "auto" else float(self.lr)  # IncrementalRun sets each batch's rate itself
        net = start_run(
            spec, training_settings(params), X, lr=lr, seed=self._draw_seed(), device=device, fitted=fitted_net
        )
        return net, params

    def _check_n_train(self, n_samples: int) -> int:
        """Training rows left after the validation split."""
        n_valid = math.ceil(self.validation_fraction * n_samples)
        if n_samples - n_valid < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves no training rows out of {n_samples}; lower it."
            )
        return n_samples - n_valid

    def _set_fitted(self, net, params: dict) -> None:
        """Make a trained (or restored) net this estimator's model, built with ``params``, and set the fitted attributes."""
        release_training_state(net)
        for name in ("n_steps_", "n_samples_seen_", "lr_"):  # what a partial_fit run or an earlier fit set
            self.__dict__.pop(name, None)
        self._adopt_net(net)
        # The snapshot that save, export and transform read: set_params after a fit changes nothing until the next.
        self._fitted_params = _snapshot(params)

    def _fitted_params_or_current(self) -> dict:
        """The parameters the fitted model was built with (a pickle from before they were kept: the current ones)."""
        fitted = getattr(self, "_fitted_params", None)
        return dict(fitted) if fitted is not None else self.get_params(deep=False)

    def _adopt_net(self, net) -> None:
        """Make ``net`` this estimator's model, with the fitted attributes that follow from it."""
        self.__dict__.pop("_components", None)  # the atoms of the weights net_ held before
        self.net_ = net
        self.n_latents_ = net.module_.n_latents
        self.history_ = net.history
        self.n_iter_ = len(net.history)
        self.amp_ = bool(net.amp)  # amp="auto" resolved for the device the net was built on

    @classmethod
    def _from_saved(cls, model, *, device: str):
        """The fitted estimator of a :class:`~sklearn_sae._persistence.SavedModel`, its weights on ``device``.

        The shared last step of loading a saved model and of importing one
        from another library.
        """
        estimator = cls(**dict(model.params, device=device))
        params = estimator.get_params(deep=False)  # with the defaults an import leaves unset
        spec = model_spec(params, model.n_features, model.n_latents, anneal_steps=model.anneal_steps)
        net = fitted_net(
            spec, training_settings(params), model.state_dict, device=resolve_device(device),
            history=History(model.history),
        )
        estimator._set_fitted(net, params)
        estimator.n_features_in_ = model.n_features
        estimator.n_iter_ = model.n_iter
        if model.feature_names is not None:
            estimator.feature_names_in_ = np.asarray(model.feature_names, dtype=object)
        estimator.lr_ = model.lr
        if model.amp is not None:  # the precision it was fitted in, whatever "auto" would choose here
            estimator.amp_ = model.amp
        return estimator

    def _validate_eval_sets(self, eval_sets):
        if eval_sets is None:
            return None
        if not isinstance(eval_sets, dict):
            raise TypeError(f"eval_sets must be a dict of name to array, got {type(eval_sets).__name__}.")
        tensors = {}
        for name, X_eval in eval_sets.items():
            if not isinstance(name, str) or not name.isidentifier() or name in ("train", "valid"):
                raise ValueError(
                    f"eval_sets name {name!r} is not allowed: use an identifier other than 'train' and 'valid'."
                )
            X_eval = self._validated_rows(X_eval, reset=False, name=f"eval_sets[{name!r}]")
            tensors[name] = torch.from_numpy(np.array(X_eval, dtype=np.float32, order="C", copy=True))
        return tensors

    # ------------------------------------------------------------ inference

    def _module(self):
        module = self.net_.module_
        module.eval()
        return module

    def _autocast(self, device):
        # The fitted model's precision (a pickle from before amp_ was kept: its fitted amp, then only a bool).
        amp = getattr(self, "amp_", None)
        amp = self._fitted_params_or_current()["amp"] if amp is None else amp
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bool(amp))

    def _rows_to_read(self, X):
        """``X`` checked for inference: an on-disk array's shape, or an in-memory ``X`` validated to float32."""
        if is_on_disk(X):
            check_on_disk(X, n_features=self.n_features_in_)
            return X
        return validate_data(self, X, dtype=np.float32, reset=False)

    def _blocks(self, X, *, name="X"):
        """``(start, block)`` over the rows of ``X``: the one inference loop, in memory or on disk.

        A block holds at most :data:`~sklearn_sae._blocks.BLOCK_ELEMENTS`
        values in its widest array (input or codes), and its values are
        checked to be small enough for float32 sums.
        """
        for start, block in iter_row_blocks(X, block_rows_for(self.n_latents_, self.n_features_in_)):
            yield start, check_magnitude(block, name=name)

    @torch.no_grad()
    def _encode_block(self, module, block):
        """Codes of one block: a :class:`TopKSelection` for the top-k activations, else a dense tensor."""
        x = _as_tensor(block).to(module.W_enc.device)
        with self._autocast(x.device):
            if isinstance(module.activation, TopK):
                return module.encode_topk(x)
            return module.activation(module.encode_pre(module.preprocess(x)[0]).float())

    @torch.no_grad()
    def _reconstruct_block(self, module, block) -> np.ndarray:
        """``reconstruct`` of one validated float32 block."""
        x = _as_tensor(block).to(module.W_enc.device)
        with self._autocast(x.device):
            return module(x).x_hat.float().cpu().numpy()

    def transform(self, X):
        """Encode ``X`` into sparse codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to encode. An ``h5py.Dataset`` or a ``numpy.memmap`` is read
            block by block (the codes are built block by block too).

        Returns
        -------
        codes : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_latents_)
            Non-negative codes; at most ``k`` non-zeros per row for ``"topk"``
            and ``"gumbel_topk"``, a number that varies from row to row for
            ``"batchtopk"`` (about ``k`` on average over rows like the
            training rows) and ``"jumprelu"``. Each row's codes depend on that
            row alone. CSR when ``sparse_output=True``.
        """
        check_is_fitted(self)
        X = self._rows_to_read(X)
        module = self._module()
        # Dense codes go straight into the output and CSR pieces are built from the top-k indices: no block is
        # copied twice.
        out = None if self.sparse_output else np.zeros((X.shape[0], self.n_latents_), dtype=np.float32)
        pieces = []
        for start, block in self._blocks(X):
            codes = self._encode_block(module, block)
            rows = slice(start, start + block.shape[0])
            if isinstance(codes, TopKSelection):
                values, indices = codes.values.float().cpu().numpy(), codes.indices.cpu().numpy()
                if out is None:
                    pieces.append(_csr_from_topk(values, indices, self.n_latents_))
                else:
                    np.put_along_axis(out[rows], indices, values, axis=1)
            elif out is None:
                pieces.append(_csr_from_dense(codes.cpu()))
            else:
                out[rows] = codes.cpu().numpy()
        return out if out is not None else sp.vstack(pieces, format="csr")

    def inverse_transform(self, X):
        """Decode codes back to feature space.

        With ``normalize=False``, ``inverse_transform(transform(X))`` is
        :meth:`reconstruct` of ``X``. With ``normalize=True`` the codes do not
        hold each row's mean and scale, so the result is the reconstruction in
        the standardised space the model encodes:
        ``(reconstruct(X) - m) / s`` for each row, with ``m`` its mean and ``s
        = sqrt(var + 1e-5)`` its (biased) standard deviation. Use
        :meth:`reconstruct` for reconstructions in input units.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_latents_)
            Codes, dense or sparse (any SciPy format).

        Returns
        -------
        X_decoded : ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self)
        codes = check_array(X, accept_sparse="csr", dtype=np.float32, input_name="codes")
        if codes.shape[1] != self.n_latents_:
            raise ValueError(f"codes have {codes.shape[1]} columns but this model has n_latents_={self.n_latents_}.")
        module = self._module()
        out = np.empty((codes.shape[0], self.n_features_in_), dtype=np.float32)
        for start, block in self._blocks(codes, name="codes"):
            block = block.toarray() if sp.issparse(block) else block
            h = _as_tensor(np.ascontiguousarray(block, dtype=np.float32)).to(module.W_enc.device)
            with torch.no_grad(), self._autocast(h.device):
                out[start : start + block.shape[0]] = module.decode(h).float().cpu().numpy()
        return out

    @torch.no_grad()
    def reconstruct(self, X):
        """Encode and decode ``X``, in the input's units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to reconstruct.

        Returns
        -------
        X_hat : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = self._rows_to_read(X)
        module = self._module()
        out = np.empty((X.shape[0], self.n_features_in_), dtype=np.float32)
        for start, block in self._blocks(X):
            out[start : start + block.shape[0]] = self._reconstruct_block(module, block)
        return out

    def score(self, X, y=None):
        """Explained variance of the reconstruction, ``1 - FVU`` (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to reconstruct.
        y : None
            Ignored.

        Returns
        -------
        score : float
            1 for a perfect reconstruction, 0 for one no better than the mean row
            (:func:`sklearn_sae.metrics.fvu`; rows that do not vary score 1 if
            reconstructed exactly, else 0).
        """
        check_is_fitted(self)
        module = self._module()
        totals = FVUTotals()
        for _, block in self._blocks(self._rows_to_read(X)):
            totals.add(block, self._reconstruct_block(module, block))
        return 1.0 - totals.fvu()

    # ------------------------------------------------------ sklearn plumbing

    @property
    def components_(self):
        # Copied from the module once per fitted model, on first use: a loop over latents reads it cheaply, and a
        # model whose atoms nobody reads does not hold them twice. _adopt_net drops the copy when the weights change.
        atoms = self.__dict__.get("_components")
        if atoms is None:
            atoms = self.net_.module_.atoms().detach().float().cpu().numpy().copy()
            atoms.setflags(write=False)
            self._components = atoms
        return atoms

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_components", None)  # derived from the weights the pickle holds anyway
        return state

    @property
    def _n_features_out(self):
        return self.n_latents_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = self.random_state is None
        return tags

    # ---------------------------------------------------------- persistence

    def save(self, directory):
        """Save the fitted model to ``directory``: weights in safetensors, the rest in JSON.

        The directory gets two files, ``model.safetensors`` (the module's
        tensors) and ``sklearn_sae.json`` (parameters, fitted attributes,
        history, versions and the weights' SHA-256). Neither can run code
        when read, unlike a pickle. The directory is written under a
        temporary name and renamed into place when complete, so an
        interrupted save leaves a model saved there before intact.

        Parameters
        ----------
        directory : str or os.PathLike
            Where to save; created if needed. An existing directory must be
            empty or hold only what this package writes there (a model
            written by :meth:`save` or a directory written by
            :meth:`export`): it is then replaced whole. Any other content,
            a file of yours beside a saved model included, raises
            ``ValueError`` and is left as it was.

        Returns
        -------
        self : SparseAutoencoderTransformer
            The estimator, unchanged.

        Raises
        ------
        ValueError
            When ``directory`` holds anything this package did not write
            there; the message names it.

        Notes
        -----
        ``random_state`` is saved when it is an int or None. A
        ``RandomState`` instance cannot be written as JSON: the model is
        saved with ``random_state=None`` and a warning, since only a refit
        would use it. Non-finite numbers in ``history_`` (a diverged fit)
        are saved as JSON ``null`` and load as ``None``.
        """
        check_is_fitted(self)
        module = self.net_.module_
        fitted, current = self._fitted_params_or_current(), self.get_params(deep=False)
        _warn_if_changed(
            fitted, current, OUTPUT_PARAMS, "save() writes the fitted model",
            "They take effect at the next fit; save again after it to keep them.",
        )
        _persistence.save_model(
            _persistence.SavedModel(
                params={**fitted, **{name: current[name] for name in OUTPUT_PARAMS}},
                n_features=self.n_features_in_,
                n_latents=self.n_latents_,
                anneal_steps=schedule_length(module.activation),
                state_dict=module.state_dict(),
                history=list(self.history_),
                n_iter=self.n_iter_,
                feature_names=getattr(self, "feature_names_in_", None),
                lr=getattr(self, "lr_", None),
                amp=getattr(self, "amp_", None),
            ),
            directory,
        )
        return self

    @classmethod
    def load(cls, directory, *, device="cpu"):
        """Load a model written by :meth:`save`, without unpickling or running anything from the files.

        It also reads the directories of EleutherAI sparsify (a Top-K
        ``SparseCoder``) and SAELens (a ``"standard"``, ``"topk"`` or
        ``"jumprelu"`` SAE that subtracts ``b_dec`` from its input and has no
        input normalisation; a JumpReLU's thresholds must be positive),
        among them those written by :meth:`export`, which come back as the
        model that was exported (a BatchTopK model exported as a JumpReLU
        comes back as BatchTopK, and a Matryoshka model with its prefix
        fractions, from the record the export writes beside the files).
        Architectures this package cannot compute exactly are refused with
        a ``ValueError`` that says why. An imported model has an empty
        ``history_``, and the parameters that do not
        shape the model (``lr``, ``batch_size``, ``sparse_output``, ...) at
        their defaults: the other formats do not carry them.

        Parameters
        ----------
        directory : str or os.PathLike
            The directory given to :meth:`save` or :meth:`export`, or one
            written by sparsify or SAELens.
        device : str, default="cpu"
            Where to put the weights, whatever device the model was trained
            on: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (a GPU when
            PyTorch sees one). The loaded estimator's ``device`` parameter is
            set to it, so a later refit runs there too. A model trained on a
            GPU loads on a machine without one under the default.

        Returns
        -------
        estimator : SparseAutoencoderTransformer
            The fitted estimator, with the saved parameters, weights,
            ``history_``, ``n_iter_``, ``n_features_in_`` and, when saved,
            ``feature_names_in_``; its ``transform`` gives the same output as
            the saved model's on the same device.

        Raises
        ------
        ValueError
            When a file is missing, damaged, truncated or of a newer format,
            or the JSON disagrees with the weights; the message names the file
            and the field.
        """
        if not isinstance(device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}.")
        model = None if _persistence.is_saved_model(directory) else _interop.load_foreign(directory)
        if model is None:
            model = _persistence.read_model(directory)
        return cls._from_saved(model, device=device)

    # ------------------------------------------------- sharing with other libraries

    def export(self, directory, format, *, normalization=None, as_topk=False):
        """Write the fitted model in the format of another SAE library.

        ``format="sparsify"`` writes a directory that EleutherAI sparsify loads
        with ``sparsify.SparseCoder.load_from_disk(directory)``;
        ``format="saelens"`` one that SAELens (6 or later) loads with
        ``sae_lens.SAE.load_from_disk(directory)``. Weights go to a
        safetensors file and the configuration to ``cfg.json``; a tied model
        is written with two explicit copies of its matrix. A third file,
        ``sklearn_sae.json``, which the other libraries ignore, records how
        the model was fitted, so that importing the directory back gives this
        model exactly (:meth:`load`). An
        existing ``directory`` is replaced only if it is empty or holds only
        what this package writes there (an earlier export or a model written
        by :meth:`save`), and only once the new one is complete; any other
        content raises ``ValueError`` and is left as it was. Only training
        state is left behind: the optimiser, the history and the dead-latent
        counts.

        What each library computes exactly, and what needs an opt-in:

        - ``activation="topk"``: exact in both formats (same codes and
          reconstructions up to float32 rounding of the library's own
          kernels), given ``normalize=False`` or the opt-in below.
        - ``activation="relu"``: SAELens's ``"standard"`` SAE computes it
          exactly; the L1 penalty is a training term, not part of the model,
          so nothing is lost for inference. sparsify has only Top-K coders:
          ``as_topk=True`` exports it as Top-K with ``k = n_latents_``, which
          keeps every latent and is again exactly the ReLU codes (all of them
          stored, so not sparse by construction).
        - ``activation="gumbel_topk"`` is exactly Top-K at inference, so the
          exported model gives the same codes (tolerance 0 beyond float32
          rounding); but its Gumbel noise and temperature schedule cannot be
          carried, so it needs ``as_topk=True``, which says that training the
          exported model further would continue as plain Top-K.
        - ``activation="batchtopk"``: SAELens only, written as a ``"jumprelu"``
          SAE whose thresholds all equal the learned ``theta``, as SAELens
          saves BatchTopK SAEs; it computes the same codes, and importing it
          back gives a BatchTopK model again (its ``k`` from the record this
          package writes beside the files). sparsify's coders are Top-K
          only and cannot compute a threshold: refused.
        - ``activation="jumprelu"``: SAELens only, as its ``"jumprelu"``
          architecture with the learned thresholds; sparsify refuses.
        - ``matryoshka``: the nested prefixes shape training only; at
          inference the model is its activation, and it is exported as that
          activation under the rules above (a Top-K Matryoshka model goes to
          sparsify too). The other libraries' files cannot say that it was
          trained with prefixes; the record this package writes beside them
          keeps the fractions, so :meth:`load` restores them.
        - ``normalize=True``: neither library standardises rows as this
          model does (zero mean, then division by ``sqrt(var + 1e-5)`` with
          the biased variance). ``normalization="standardized"`` exports the
          model without its normalisation: the exported SAE then takes rows
          already standardised this way, ``(x - x.mean(-1, keepdims=True)) /
          np.sqrt(x.var(-1, keepdims=True) + 1e-5)``, and gives exactly this
          model's codes and, in the standardised space, its
          :meth:`inverse_transform`. ``normalization="layer_norm"``
          (SAELens only) uses SAELens's own ``"layer_norm"`` normalisation so
          that the exported SAE takes raw rows; SAELens divides by the
          Bessel-corrected std plus 1e-5 and multiplies back by the std alone.
          The Bessel factor ``sqrt(n / (n - 1))`` is folded into the weights,
          but the eps is not foldable: a row of biased variance ``v`` is
          standardised and rescaled with a relative difference of order
          ``1e-5 / v``. ``benchmarks/bench_interop_layer_norm.py`` measured,
          relative to the largest code and to each row's spread: rows of
          variance near 1, codes within 6e-6 and reconstructions within 1e-5;
          rows of variance 0.07, codes within 1.2e-4, but 0.1% to 0.3% of rows
          keep other latents; the shipped NEAR rows (variance about 7e-4),
          codes off by 1e-2 and 8% of Top-K rows keeping other latents. Use it
          only for rows whose variance is far above 1e-5;
          ``"standardized"`` is exact. Both load back (:meth:`load`) as this
          model, ``normalize=True`` included: ``"standardized"`` bit for
          bit, ``"layer_norm"`` with the Bessel factor folded out again, its
          weights within one float32 rounding of these, so its codes agree
          with this model's to float32 rounding (relative 1e-6).

        The weights are float32 and the exported model computes in float32;
        a model fitted with ``amp=True`` computes its own ``transform`` in
        bfloat16, so the two differ by bfloat16 rounding.

        Parameters
        ----------
        directory : str or os.PathLike
            Directory to write; created if needed. An existing one must be
            empty or hold only what this package writes (see above).
        format : {"sparsify", "saelens"}
            The library whose format to write.
        normalization : {"standardized", "layer_norm"}, default=None
            How to export a model fitted with ``normalize=True`` (see above);
            must be ``None`` for ``normalize=False``.
        as_topk : bool, default=False
            Allow exporting ``"gumbel_topk"`` as the Top-K it is at inference,
            and ``"relu"`` as Top-K with ``k = n_latents_`` (see above).

        Raises
        ------
        ValueError
            When the model cannot be exported as asked (the message names the
            opt-in), or ``directory`` holds anything this package did not
            write there (the message names it).
        """
        check_is_fitted(self)
        fitted = self._fitted_params_or_current()
        _interop.export_model(
            self.net_.module_, directory, format, unit_norm_decoder=fitted["unit_norm_decoder"],
            normalization=normalization, as_topk=as_topk, matryoshka=fitted["matryoshka"],
        )


def _as_tensor(block: np.ndarray) -> torch.Tensor:
    """A CPU tensor of a float32 block, sharing its memory unless the block is read-only.

    pandas hands out read-only views of its data (copy-on-write); torch cannot wrap those without a
    warning, so they are copied, one block at a time.
    """
    return torch.from_numpy(block if block.flags.writeable else block.copy())


def _snapshot(params: dict) -> dict:
    """A copy of ``params`` that later changes to the caller's objects (a ``matryoshka`` list) cannot reach.

    ``random_state`` is kept as it is: a ``RandomState`` is compared by identity, and its copy would differ.
    """
    copied = copy.deepcopy({name: value for name, value in params.items() if name != "random_state"})
    return {**copied, "random_state": params["random_state"]}


@contextlib.contextmanager
def _kept_on_error(estimator):
    """Give the estimator back its fitted state (attributes, not parameters) when the block raises.

    ``fit`` sets ``n_features_in_`` and ``feature_names_in_`` while validating, before the checks that can
    still refuse the call: a refit that fails must leave the model fitted before usable.
    """
    params = set(estimator.get_params(deep=False))
    saved = {name: value for name, value in vars(estimator).items() if name not in params}
    try:
        yield
    except BaseException:
        for name in [name for name in vars(estimator) if name not in params]:
            delattr(estimator, name)
        vars(estimator).update(saved)
        raise


def _check_finite_weights(net) -> None:
    """Refuse a model whose training diverged to non-finite weights; warn when only the history holds NaN or inf.

    Early stopping keeps the best epoch, so a fit whose later epochs diverged can still end with good weights.
    """
    module = net.module_
    if not all(bool(torch.isfinite(tensor).all()) for tensor in module.state_dict().values()
               if tensor.is_floating_point()):
        raise ValueError(
            "Training diverged: the model's weights are no longer finite (NaN or infinity), so its codes would be "
            f"too. Training loss by epoch: {_epoch_losses(net)}. Lower lr (lr='auto' scales it "
            "to the data), keep grad_clip, or use amp=False."
        )
    losses = [entry.get("train_loss") for entry in net.history]
    if any(loss is not None and not math.isfinite(loss) for loss in losses):
        warn_user(
            f"The training loss became non-finite in some epochs ({_epoch_losses(net)}), but the weights kept "
            "are finite (early stopping kept an earlier epoch). Lower lr to train without diverging."
        )


def _epoch_losses(net, last: int = 10) -> str:
    """The training loss of the last ``last`` epochs, for a message."""
    losses = [f"{entry.get('train_loss', math.nan):.3g}" for entry in net.history[-last:]]
    return ("..., " if len(net.history) > last else "") + ", ".join(losses)


def _warn_if_too_few_rows(n_train: int, n_latents: int) -> None:
    """Warn when a fit has fewer training rows than latents."""
    if n_train >= n_latents:
        return
    warn_user(
        f"{n_train} training rows for {n_latents} latents: with fewer rows than latents the dictionary "
        "cannot be learned from the data (most latents see too few rows to mean anything). Give more rows, "
        "or lower n_latents (n_latents=None sizes the dictionary to the rows)."
    )


def _warn_if_changed(fitted: dict, current: dict, unchecked, what: str, advice: str) -> None:
    """Warn when ``set_params`` changed parameters (all but ``unchecked``) that the call ``what`` does not apply."""
    changed = changed_params(fitted, current, set(current) - set(unchecked))
    if not changed:
        return
    listed = ", ".join(f"{name}={old!r} (now {new!r})" for name, (old, new) in changed.items())
    warn_user(f"{what}, with {listed}: set_params changed them after it was fitted. {advice}")


DENSE_CODES_FRACTION = 0.5
"""A default dictionary in which each row keeps more than this share of the latents gets a warning: its codes are
hardly sparse."""


def _warn_if_default_is_dense(params: dict, n_latents: int, *, n_train: int | None = None) -> None:
    """Warn when ``n_latents=None`` sized a top-k dictionary so small that every row keeps most of its latents."""
    if params["n_latents"] is not None or params["activation"] in ("relu", "jumprelu"):
        return
    k = int(params["k"])
    if k <= DENSE_CODES_FRACTION * n_latents:
        return
    rows = f" for {n_train} training rows" if n_train is not None else ""
    warn_user(
        f"n_latents=None gave {n_latents} latents{rows} and each row keeps k={k} of them: the codes are hardly sparse "
        f"(every latent fires on most rows). Lower k (at most {max(1, int(DENSE_CODES_FRACTION * n_latents))} keeps "
        "under half of them a row), give more rows, or set n_latents yourself."
    )


def _restored_epoch(net) -> int:
    """Index in ``net.history`` of the epoch whose weights the fitted model holds: early stopping's best, else the last."""
    stopping = dict(getattr(net, "callbacks_", [])).get("early_stopping")
    best = getattr(stopping, "best_epoch_", None)
    if best is not None and getattr(stopping, "load_best", False):
        for index in range(len(net.history)):
            if net.history[index, "epoch"] == best:
                return index
    return len(net.history) - 1


def _warn_if_unhealthy(net, epoch: int) -> None:
    """Warn when the fitted model (the weights of history entry ``epoch``) has many dead latents, or when a
    Gumbel-Top-K fit ended with its temperature not annealed."""
    _warn_if_not_annealed(net.module_.activation)
    if not len(net.history) or "train_dead_fraction" not in net.history[epoch]:
        return
    dead = net.history[epoch, "train_dead_fraction"]
    if dead <= DEAD_WARNING_FRACTION:
        return
    if isinstance(net.module_.activation, ReLU):  # its latents are pushed to zero by the L1 penalty
        revive = "lower l1_coef (the sparsity penalty pushes latents to zero)"
    elif isinstance(net.module_.activation, JumpReLU):
        revive = "keep pre_act_coef='auto' (its pre-activation term pulls dead latents back), lower l0_coef"
    else:  # the top-k activations
        revive = "keep aux_k='auto' (AuxK revives dead latents)"
    last = epoch == len(net.history) - 1
    which = "in the last epoch" if last else f"in epoch {net.history[epoch, 'epoch']}, whose weights were kept"
    warn_user(
        f"{dead:.1%} of the {net.module_.n_latents} latents never fired on the training rows {which} "
        f"(dead latents; more than {DEAD_WARNING_FRACTION:.0%}). Lower lr (lr='auto' scales it to the width), "
        f"{revive}, train for more steps (max_epochs='auto'), or use fewer latents (n_latents=None sizes the "
        "dictionary to the rows). history_[:, 'train_dead_fraction'] has the fraction of each epoch."
    )


def _warn_if_not_annealed(activation) -> None:
    """Warn when a Gumbel-Top-K fit stopped before its temperature reached ``tau_end``.

    Such a model trained with noisy selection to the end and is then used with
    the hard Top-K of inference, which it never trained with.
    """
    # Done when the last annealing call (number anneal_steps - 1, at tau_end) has run.
    if not isinstance(activation, GumbelTopK) or int(activation.n_steps) >= activation.anneal_steps:
        return
    n_batches = int(activation.n_steps)
    reached = activation.temperature_at(max(n_batches - 1, 0))
    warn_user(
        f"gumbel_topk ran {n_batches} training batches but anneals over {activation.anneal_steps}: its "
        f"temperature reached {reached:.3g}, not tau_end={activation.tau_end:g}, so the model never trained "
        "with the hard Top-K it uses at inference. Pass anneal_steps as a fraction of the fit's batches "
        "(e.g. anneal_steps=0.5), or a number of batches at most the number the fit runs, or train longer."
    )


def _csr_from_dense(codes: torch.Tensor) -> sp.csr_matrix:
    """CSR matrix of one block of dense codes (a threshold activation's), its zeros left out.

    torch's conversion reads the block once and writes only the non-zeros; scipy's from a dense array took
    2.6 times as long on a block of 4,096 x 4,096 codes with 93 non-zeros a row.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        csr = codes.to_sparse_csr()
    return sp.csr_matrix(
        (csr.values().numpy(), csr.col_indices().numpy(), csr.crow_indices().numpy()), shape=tuple(codes.shape)
    )


def _csr_from_topk(values: np.ndarray, indices: np.ndarray, n_latents: int) -> sp.csr_matrix:
    """CSR matrix with row ``i`` holding ``values[i]`` at columns ``indices[i]``; explicit zeros dropped."""
    n_rows, k = values.shape
    order = np.argsort(indices, axis=1)  # CSR wants sorted column indices per row
    values = np.take_along_axis(values, order, axis=1)
    indices = np.take_along_axis(indices, order, axis=1)
    keep = values != 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    return sp.csr_matrix((values[keep], indices[keep], indptr), shape=(n_rows, n_latents))
