"""The three tasks of the public ScaleGMN code, end to end on this package's zoos or the published files.

* ``inr-cls`` -- INR classification (invariant ScaleGMN, cross-entropy; test accuracy).
* ``cnn-gen`` -- CNN generalisation prediction (invariant ScaleGMN, MSE of sigmoid(output) to the
  test accuracy; Kendall's tau).
* ``inr-edit`` -- INR editing (residual equivariant ScaleGMN; render MSE to the dilated image).

Modules: :mod:`.data` (networks and targets by split), :mod:`.model` (public-configuration or own
structure, per-layer input normalisation), :mod:`.objectives` (losses and metrics),
:mod:`.run` (training with the package's Trainer, results). Command line:
``scalegmn-ext task inr-cls|cnn-gen|inr-edit``.
"""

from .data import TASKS, TaskData, cnn_gen_data, dilate, inr_cls_data, inr_edit_data, load_task_data
from .model import TaskModel, build_task_model, layer_scales, load_task_model
from .objectives import PRIMARY, kendall_tau, predict, score
from .run import PUBLIC_ANCHORS, public_train_settings, run_public_task

__all__ = [
    "TASKS",
    "TaskData",
    "inr_cls_data",
    "cnn_gen_data",
    "inr_edit_data",
    "load_task_data",
    "dilate",
    "TaskModel",
    "build_task_model",
    "layer_scales",
    "load_task_model",
    "PRIMARY",
    "kendall_tau",
    "predict",
    "score",
    "PUBLIC_ANCHORS",
    "public_train_settings",
    "run_public_task",
]
