"""What the latents mean: their statistics and their associations with protein labels.

Every function takes codes, the non-negative activations of a sparse
autoencoder (one row per protein, one column per latent), dense or in any
SciPy sparse format, and never densifies them.

======================  ====================================================================
``latent_stats``        per-latent counts, density, max, mean and spread of the activations
``latent_scale``        each latent's largest activation: what thresholds are fractions of
``encode_labels``       labels (categorical or multi-label) as a sparse indicator matrix
``label_associations``  precision, recall, F1, AUROC and enrichment tests of every
                        (latent, label, threshold)
``LatentLabelMatcher``  the held-out protocol: pick each label's latent on one split,
                        score it on another
``split_signs``         signed features as non-negative parts, to compare raw embeddings
======================  ====================================================================
"""

from ._associations import label_associations
from ._labels import encode_labels
from ._matching import LatentLabelMatcher
from ._stats import latent_scale, latent_stats, split_signs, split_signs_names

__all__ = [
    "LatentLabelMatcher",
    "encode_labels",
    "label_associations",
    "latent_scale",
    "latent_stats",
    "split_signs",
    "split_signs_names",
]

# --------------------------------------------------------------------------- feature cards and the atlas
# Imported below, and added to __all__, by the modules that build on the statistics above.
from ._atlas import write_atlas  # noqa: E402
from ._cards import FeatureCard, feature_card, plot_feature_card  # noqa: E402

__all__ += ["FeatureCard", "feature_card", "plot_feature_card", "write_atlas"]
