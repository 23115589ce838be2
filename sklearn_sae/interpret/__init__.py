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
``feature_card``        everything about one latent, as data; ``plot_feature_card`` draws it
``write_atlas``         one self-contained HTML page with a table and a card for every latent
======================  ====================================================================
"""

from ._associations import label_associations
from ._atlas import write_atlas
from ._cards import FeatureCard, feature_card, plot_feature_card
from ._labels import encode_labels
from ._matching import LatentLabelMatcher
from ._stats import latent_scale, latent_stats, split_signs, split_signs_names

__all__ = [
    "FeatureCard",
    "LatentLabelMatcher",
    "encode_labels",
    "feature_card",
    "label_associations",
    "latent_scale",
    "latent_stats",
    "plot_feature_card",
    "split_signs",
    "split_signs_names",
    "write_atlas",
]
