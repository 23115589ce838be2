"""The held-out protocol: choose a latent and a threshold per label on one split, score them on another."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._associations import (
    DEFAULT_THRESHOLDS,
    _associations,
    _check_thresholds,
    _score_chosen_pairs,
)
from ._labels import _encode_labels_for_rows, _encode_labels_like
from ._stats import _check_codes, _check_count, _scale_of_checked

__all__ = ["LatentLabelMatcher"]


class LatentLabelMatcher(BaseEstimator):
    """Match each label with its best latent on one split, and test the match on another.

    Choosing the best of thousands of latents for a label is itself a fit:
    scored on the same proteins, the winner's F1 is biased upwards, even for
    a label that no latent knows. As in InterPLM, the choice is made on one
    split (:meth:`fit`) and scored on held-out proteins (:meth:`evaluate`),
    with thresholds that keep the fit split's scale.

    Parameters
    ----------
    thresholds : float or sequence of float, default=(0.0, 0.15, 0.5, 0.6, 0.8)
        Candidate thresholds, strictly increasing in [0, 1), as fractions of
        each latent's largest activation on the fit split.
    min_support : int, default=1
        Labels with fewer positive proteins on the fit split are not matched;
        they are left out of ``matches_`` and ``label_names_``.
    associated_f1 : float, default=0.5
        A label is *associated* with its latent when the F1 exceeds this on
        both splits.

    Attributes
    ----------
    scale_ : ndarray of shape (n_latents,)
        :func:`~sklearn_sae.interpret.latent_scale` of the fit codes; the
        evaluation divides by it too.
    label_names_ : pandas.Index
        The labels matched, in the order of :func:`~sklearn_sae.interpret.encode_labels`.
    matches_ : pandas.DataFrame
        Indexed by label: the chosen ``latent`` and ``threshold``, the pair
        with the best F1 on the fit split (ties go to the lowest latent, then
        the lowest threshold), and its fit-split statistics (the columns of
        :func:`~sklearn_sae.interpret.label_associations`).
    n_features_in_ : int
        Number of latents in the fit codes.

    Examples
    --------
    >>> from sklearn_sae.interpret import LatentLabelMatcher
    >>> matcher = LatentLabelMatcher().fit(codes_train, labels_train)  # doctest: +SKIP
    >>> matcher.evaluate(codes_test, labels_test).query("associated")  # doctest: +SKIP
    """

    def __init__(self, *, thresholds=DEFAULT_THRESHOLDS, min_support=1, associated_f1=0.5):
        self.thresholds = thresholds
        self.min_support = min_support
        self.associated_f1 = associated_f1

    def fit(self, codes, labels):
        """Choose, for each label, the (latent, threshold) with the best F1 on these proteins.

        Parameters
        ----------
        codes : array-like or sparse matrix of shape (n_samples, n_latents)
            Non-negative activations of the fit split.
        labels : array-like, sparse matrix or DataFrame
            Its labels, in any form :func:`~sklearn_sae.interpret.encode_labels` reads.

        Returns
        -------
        self : LatentLabelMatcher
        """
        thresholds = _check_thresholds(self.thresholds)
        min_support = _check_count(self.min_support, "min_support")
        _check_associated_f1(self.associated_f1)
        codes = _check_codes(codes)
        indicator, names = _encode_labels_for_rows(labels, codes.shape[0])
        scale = _scale_of_checked(codes)
        best_per_threshold = _associations(
            codes,
            indicator,
            names,
            scale=scale,
            thresholds=thresholds,
            min_support=min_support,
            top_n=1,
            sort_by="f1",
            sort=False,
        )
        if best_per_threshold.empty:
            raise ValueError(f"No label has at least min_support={min_support} positive proteins; lower min_support.")
        self.matches_ = _best_per_label(best_per_threshold, names)
        self.label_names_ = pd.Index(self.matches_.index)
        self.scale_ = scale
        self.n_features_in_ = codes.shape[1]
        return self

    def evaluate(self, codes, labels) -> pd.DataFrame:
        """Score each label's chosen (latent, threshold) on other proteins.

        Parameters
        ----------
        codes : array-like or sparse matrix of shape (n_samples, n_latents)
            Non-negative activations of the held-out split, from the same
            model (same latents) as the fit codes. Thresholds apply to
            ``activation / scale_``: the fit split's scale.
        labels : array-like, sparse matrix or DataFrame
            Their labels. Every label in ``label_names_`` must be present (a
            class that never occurs, or a missing column, is an error) and
            have positive and negative proteins; other labels are ignored.

        Returns
        -------
        pandas.DataFrame
            Indexed by label, with the chosen ``latent`` and ``threshold``;
            ``n_pos``, ``n_active``, ``tp``, ``precision``, ``recall``,
            ``f1``, ``fold_enrichment``, ``auroc`` and ``pvalue`` on these
            proteins, as in :func:`~sklearn_sae.interpret.label_associations`;
            ``qvalue``, Benjamini-Hochberg over the labels (one test each);
            ``fit_f1``, the F1 on the fit split; and ``associated``, True when
            the F1 exceeds ``associated_f1`` on both splits.
        """
        check_is_fitted(self, "matches_")
        codes = _check_codes(codes)
        if codes.shape[1] != self.n_features_in_:
            raise ValueError(
                f"codes has {codes.shape[1]} latents but the matcher was fit on {self.n_features_in_}; "
                "evaluate codes from the same model."
            )
        indicator, _ = _encode_labels_like(labels, self.label_names_, codes.shape[0])
        scores = _score_chosen_pairs(
            codes,
            indicator,
            self.matches_["latent"].to_numpy(),
            self.matches_["threshold"].to_numpy(),
            self.scale_,
        )
        scores.index = self.label_names_.rename("label")
        scores["fit_f1"] = self.matches_["f1"].to_numpy()
        scores["associated"] = (scores["fit_f1"] > self.associated_f1) & (scores["f1"] > self.associated_f1)
        return scores


def _check_associated_f1(value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"associated_f1 must be a number; got {value!r}.")
    if not 0 <= value < 1:
        raise ValueError(f"associated_f1 must lie in [0, 1); got {value}.")


def _best_per_label(table, names) -> pd.DataFrame:
    """One row per label: the best F1, then the lowest latent, then the lowest threshold."""
    label_position = names.get_indexer(pd.Index(table["label"]))
    order = np.lexsort((table["threshold"], table["latent"], -table["f1"], label_position))
    ordered = table.iloc[order]
    first = np.unique(label_position[order], return_index=True)[1]
    best = ordered.iloc[first].set_index("label")
    return best
