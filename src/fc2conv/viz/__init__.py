"""Matplotlib figures of fc2conv's experiments (``pip install 'fc2conv[viz]'``).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes one as
a PNG atomically.
"""

from ._figures import (
    plot_feature_maps,
    plot_first_layers,
    plot_sample_efficiency,
    plot_training_curves,
    save_figure,
)

__all__ = [
    "plot_feature_maps",
    "plot_first_layers",
    "plot_sample_efficiency",
    "plot_training_curves",
    "save_figure",
]
