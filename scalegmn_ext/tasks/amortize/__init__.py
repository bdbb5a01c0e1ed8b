"""One-shot amortized optimization (Kuipers et al. 2025): an equivariant ScaleGMN maps a network's
weights to better weights in one forward pass, ``theta' = theta + f_phi(G, theta)``.

* :mod:`.objective` -- CE of the updated networks on an image batch + ``lam * ||theta'||_1``
  (:class:`AmortizedLoss`, the Trainer's loss).
* :mod:`.model` -- the residual equivariant ScaleGMN, its symmetry-broken ablation and the
  layer-normalised-input variant; checkpoints.
* :mod:`.baselines` -- SGD / Adam fine-tuning of many networks at once (batched functional forward;
  per-network learning rates), and the learning-rate tuning on validation networks.
* :mod:`.evaluation` -- metrics of held-out networks, one-shot timing, the results table.
* :mod:`.plots` -- the accuracy box plot.
* :mod:`.run` -- training over a zoo (with :class:`~scalegmn_ext.tasks.train.Trainer`) and the
  evaluation against the baselines.

Command line: ``scalegmn-ext amortize train|eval``.
"""

from .baselines import finetune, tune_lr
from .evaluation import one_shot, score
from .model import LayerNormalizedAmortizer, amortizer_state, build_amortizer, load_amortizer
from .objective import AmortizedLoss, check_lam, l1_norm, objective
from .run import evaluate_amortizers, train_amortizer, zoo_networks

__all__ = [
    "AmortizedLoss",
    "objective",
    "l1_norm",
    "check_lam",
    "build_amortizer",
    "amortizer_state",
    "load_amortizer",
    "finetune",
    "tune_lr",
    "LayerNormalizedAmortizer",
    "one_shot",
    "score",
    "train_amortizer",
    "evaluate_amortizers",
    "zoo_networks",
]
