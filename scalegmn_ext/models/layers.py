"""Building blocks of ScaleGMN: MLPs, canonicalisers, invariant nets and scale-equivariant maps.

Notation: a hidden-node (or edge) feature ``x`` in R^d transforms as ``x -> q x`` under the
symmetry group, with one scalar ``q`` per vector (``q`` in {+1, -1} for ``sign``, ``q > 0`` for
``scale``). Every block documents how its output transforms.

Each block has two forwards with identical parameters: the efficient one (``forward``) and the
straightforward one that the public implementation uses (``forward_reference``), which is the
test oracle. They agree to rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MLP", "Canonicalizer", "InvariantNet", "ScaleEq"]


class MLP(nn.Module):
    """``Linear(d_in, d_hid) -> [LayerNorm] -> SiLU -> Linear(d_hid, d_out)`` (plain, no symmetry)."""

    def __init__(self, d_in: int, d_hid: int, d_out: int, layer_norm: bool = True):
        super().__init__()
        self.lin1 = nn.Linear(d_in, d_hid)
        self.norm = nn.LayerNorm(d_hid) if layer_norm else nn.Identity()
        self.lin2 = nn.Linear(d_hid, d_out)

    def hidden(self, z: Tensor) -> Tensor:
        """The element-wise middle part ``SiLU(LayerNorm(z))`` applied to a pre-activation."""
        return F.silu(self.norm(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.hidden(self.lin1(x)))


class Canonicalizer(nn.Module):
    """Invariant map ``c`` of a feature vector (output width ``d_out``; invariant under ``x -> q x``).

    * ``sign`` + ``symmetrize``: ``c(x) = rho(x) + rho(-x)`` with ``rho`` an MLP. Efficient form:
      the first GEMM is shared (``L1(-x) = b1 - W1 x``) and the output layer applied once to the
      sum: ``W2 [s(W1 x + b1) + s(b1 - W1 x)] + 2 b2`` -- 2 GEMMs instead of 4. Inside an
      :class:`InvariantNet` the ``W2`` GEMM is further merged with ``phi``'s first layer.
    * ``sign`` + ``abs``: ``c(x) = |x|``.
    * ``scale``: ``c(x) = x / max(||x||_2, eps)`` (positive rescaling invariant).
    * ``permutation``: ``c(x) = x`` (no symmetry beyond permutations).
    """

    def __init__(self, symmetry: str, d: int, sign_canon: str = "symmetrize", layer_norm: bool = True, eps: float = 1e-12):
        super().__init__()
        self.symmetry, self.mode, self.eps = symmetry, sign_canon, eps
        self.rho = MLP(d, d, d, layer_norm) if (symmetry == "sign" and sign_canon == "symmetrize") else None

    def forward(self, x: Tensor) -> Tensor:
        if self.rho is not None:
            z = F.linear(x, self.rho.lin1.weight)
            b1 = self.rho.lin1.bias
            u = self.rho.hidden(z + b1) + self.rho.hidden(b1 - z)
            return F.linear(u, self.rho.lin2.weight, 2 * self.rho.lin2.bias)
        return self._fixed(x)

    def forward_reference(self, x: Tensor) -> Tensor:
        if self.rho is not None:
            return self.rho(x) + self.rho(-x)
        return self._fixed(x)

    def _fixed(self, x: Tensor) -> Tensor:
        if self.symmetry == "sign":
            return x.abs()
        if self.symmetry == "scale":
            # clamp (not + eps): exactly invariant unless the vector is (numerically) zero
            return x / x.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        return x


class InvariantNet(nn.Module):
    """``phi([c(x) || extra])``: an invariant vector of an equivariant input (plus invariant extras)."""

    def __init__(self, symmetry: str, d_in: int, d_extra: int, d_hid: int, d_out: int, sign_canon: str, layer_norm: bool,
                 eps: float = 1e-12):
        super().__init__()
        self.canon = Canonicalizer(symmetry, d_in, sign_canon, layer_norm, eps)
        self.phi = MLP(d_in + d_extra, d_hid, d_out, layer_norm)

    def forward(self, x: Tensor, extra: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        """``z`` optionally passes a precomputed ``rho.lin1`` pre-activation ``W1 x`` (no bias)."""
        rho = self.canon.rho
        if rho is None or extra is not None:
            c = self.canon(x)
            return self.phi(c if extra is None else torch.cat([c, extra], -1))
        # phi.lin1(rho.lin2(u)) has no non-linearity in between: one GEMM with the product matrix
        if z is None:
            z = F.linear(x, rho.lin1.weight)
        b1 = rho.lin1.bias
        u = rho.hidden(z + b1) + rho.hidden(b1 - z)
        w = self.phi.lin1.weight @ rho.lin2.weight
        b = self.phi.lin1.bias + 2 * (self.phi.lin1.weight @ rho.lin2.bias)
        return self.phi.lin2(self.phi.hidden(F.linear(u, w, b)))

    def forward_reference(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        c = self.canon.forward_reference(x)
        return self.phi(c if extra is None else torch.cat([c, extra], -1))


class ScaleEq(nn.Module):
    """Scale/sign-equivariant map ``y = Gamma x * Inv(x)`` (bias-free linear times an invariant).

    If ``x -> q x`` then ``y -> q y``: ``Gamma`` is linear without bias and ``Inv`` is invariant.
    """

    def __init__(self, symmetry: str, d_in: int, d_out: int, d_hid: int, sign_canon: str, layer_norm: bool,
                 d_extra: int = 0, eps: float = 1e-12):
        super().__init__()
        self.gamma = nn.Linear(d_in, d_out, bias=False)
        self.inv = InvariantNet(symmetry, d_in, d_extra, d_hid, d_out, sign_canon, layer_norm, eps)

    def forward(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        rho = self.inv.canon.rho
        if rho is None or extra is not None:
            return self.gamma(x) * self.inv(x, extra)
        # Gamma x and rho's first GEMM read the same x: one GEMM with stacked weights
        d_out = self.gamma.weight.shape[0]
        gz = F.linear(x, torch.cat([self.gamma.weight, rho.lin1.weight], 0))
        return gz[..., :d_out] * self.inv(x, None, z=gz[..., d_out:])

    def forward_reference(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        return self.gamma(x) * self.inv.forward_reference(x, extra)
