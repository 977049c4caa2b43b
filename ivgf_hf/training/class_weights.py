"""Segmentation class weights from the training labels' pixel frequencies (the recipe's ``class_weighting``).

``"none"`` is the paper's plain cross-entropy. ``"enet"`` is ENet's ``w_c = 1 / ln(c + p_c)`` (Paszke et al., 2016;
``c = 1.02``, ``p_c`` the fraction of labelled pixels of class ``c``): it bounds the weight of very rare classes at
``1 / ln(1.02) ~ 50`` and brings the most frequent class (``p ~ 0.9``) near 1.5. Useful where rare classes would
otherwise go unlearned in a short schedule (the CPU recipes); the weights are saved in the model's config
(``semantic_loss_class_weights``), so a fine-tuned model keeps them.
"""

import numpy as np

from .recipes import CLASS_WEIGHTINGS

__all__ = ["label_pixel_counts", "enet_class_weights", "class_weights_for"]


def label_pixel_counts(dataset, num_labels: int, ignore_index: int = 255, max_samples: int = 2000) -> np.ndarray:
    """Pixels per class id over the ``label`` column of up to ``max_samples`` evenly spaced rows, shape (num_labels,).

    Raises ValueError for a label id outside ``[0, num_labels)`` that is not ``ignore_index`` (naming the row).
    """
    if len(dataset) == 0:
        raise ValueError("cannot compute class weights from an empty training split")
    rows = np.unique(np.linspace(0, len(dataset) - 1, num=min(max_samples, len(dataset))).round().astype(int))
    labels = dataset.select_columns(["label"]).select(rows.tolist())
    counts = np.zeros(num_labels, dtype=np.int64)
    for row, example in zip(rows.tolist(), labels):
        label = np.asarray(example["label"]).reshape(-1)
        label = label[label != ignore_index]
        if label.size and (label.min() < 0 or label.max() >= num_labels):
            bad = sorted(set(np.unique(label).tolist()) - set(range(num_labels)))
            raise ValueError(f"training row {row}: label ids {bad} are outside [0, {num_labels})")
        counts += np.bincount(label, minlength=num_labels)
    return counts


def enet_class_weights(counts: np.ndarray, c: float = 1.02) -> list:
    """ENet weights ``1 / ln(c + p)`` from per-class pixel counts; a class never seen gets the largest weight."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        raise ValueError("no labelled pixel to compute class weights from")
    return [float(w) for w in 1.0 / np.log(c + counts / counts.sum())]


def class_weights_for(weighting: str, dataset, num_labels: int, ignore_index: int = 255):
    """The ``semantic_loss_class_weights`` of a recipe's ``class_weighting`` (None for ``"none"``)."""
    if weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weighting must be one of {CLASS_WEIGHTINGS}, got {weighting!r}")
    if weighting == "none":
        return None
    return enet_class_weights(label_pixel_counts(dataset, num_labels, ignore_index))
