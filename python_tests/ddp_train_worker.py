"""Worker for test_merge_autoencoder.py's DDP test: a tiny autoencoder training run.

Run either plainly (one process) or under ``torchrun --nproc_per_node 2`` (gloo); writes the final
state dict to ``<out>/final.pt`` from rank 0. The test compares the two."""

import sys

import torch
import torch.distributed as dist

from scalegmn_ext.models import ScaleGMNConfig
from scalegmn_ext.models.autoencoder import ScaleGMNAutoencoder
from scalegmn_ext.tasks.merge.autoencoder import INRRenderLoss
from scalegmn_ext.tasks.train import NetworkSet, TrainConfig, Trainer
from scalegmn_ext.testing import random_weights
from scalegmn_ext.weightspace.architecture import Architecture


def main(out: str) -> None:
    distributed = "RANK" in __import__("os").environ
    if distributed:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    arch = Architecture.siren((2, 8, 8, 1))
    ws, bs = random_weights(arch, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ws = [w / w[0].numel() ** 0.5 for w in ws]
    model = ScaleGMNAutoencoder(
        arch, ScaleGMNConfig(d_hid=8, num_layers=2, dropout=0.0), decoder="mlp", decoder_hidden=(2,)
    ).double()
    cfg = TrainConfig(steps=4, batch_size=8, warmup=2, val_every=2, checkpoint_every=2, seed=3)
    tr = Trainer(
        model,
        INRRenderLoss(arch, size=8),
        NetworkSet(ws, bs),
        NetworkSet([w[:4] for w in ws], [b[:4] for b in bs]),
        cfg,
        out,
        progress=False,
    )
    tr.fit()
    if tr.rank == 0:
        torch.save({"model": model.state_dict(), "history": tr.history}, f"{out}/final.pt")
    if distributed:
        # every rank waits until rank 0 has written final.pt: a rank that tears gloo down while its
        # peer still works can abort ("terminate called without an active exception"), seen under load
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
