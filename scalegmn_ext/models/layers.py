"""Building blocks of ScaleGMN: MLPs, canonicalisers, invariant nets and scale-equivariant maps.

Notation: a hidden-node (or edge) feature ``x`` in R^d transforms as ``x -> q x`` under the
symmetry group, with one scalar ``q`` per vector (``q`` in {+1, -1} for ``sign``, ``q > 0`` for
``scale``). Every block documents how its output transforms.

Each block has two forwards with identical parameters: the efficient one (``forward``, used by
the layer-block and graph paths) and the straightforward one that the public implementation uses
(``forward_reference``, used by the per-edge reference path of :mod:`.reference`), which is the
test oracle. They agree to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import MessageMode, ScaleEqMessageParams
from ..reference.canonical import joint_scale_normalize_terms, nonzero_or_one, row_max, scale_normalize

__all__ = ["MLP", "Canonicalizer", "InvariantNet", "ScaleEq", "GatedBackwardMessage"]


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

    def partial_first_layer(self, x: Tensor, start: int, bias: bool = False) -> Tensor:
        """The first layer's term of the input slice ``[start, start + x.shape[-1])``.

        The first layer of ``MLP([a || b])`` is ``W[:, A] a + W[:, B] b + b1``, so when ``a`` and
        ``b`` are per-node vectors gathered onto edges the two terms are computed once per node
        and only their sum is per edge. ``bias`` adds ``b1`` (to exactly one of the terms)."""
        w = self.lin1.weight[:, start : start + x.shape[-1]]
        return F.linear(x, w, self.lin1.bias if bias else None)


class Canonicalizer(nn.Module):
    """Invariant map ``c`` of a feature vector (output width ``d_out``; invariant under ``x -> q x``).

    * ``sign`` + ``symmetrize``: ``c(x) = rho(x) + rho(-x)`` with ``rho`` an MLP. Efficient form:
      the first GEMM is shared (``L1(-x) = b1 - W1 x``) and the output layer applied once to the
      sum: ``W2 [s(W1 x + b1) + s(b1 - W1 x)] + 2 b2`` -- 2 GEMMs instead of 4. Inside an
      :class:`InvariantNet` the ``W2`` GEMM is further merged with ``phi``'s first layer.
    * ``sign`` + ``abs``: ``c(x) = |x|``.
    * ``scale``: ``c(x) = x / (||x||_2 + eps)``, max-scaled so that it is exactly invariant to
      positive rescaling for every finite ``x`` when ``eps = 0`` (the default), ``c(0) = 0``; see
      :func:`~scalegmn_ext.reference.canonical.scale_normalize`.
    * ``permutation``: ``c(x) = x`` (no symmetry beyond permutations).
    """

    def __init__(
        self,
        symmetry: str,
        d: int,
        sign_canon: str = "symmetrize",
        layer_norm: bool = True,
        eps: float = 0.0,
        rho_hidden: int | None = None,
    ):
        super().__init__()
        self.symmetry, self.mode, self.eps = symmetry, sign_canon, eps
        h = d if rho_hidden is None else rho_hidden  # rho's hidden width (the public code: d_hid)
        self.rho = MLP(d, h, d, layer_norm) if (symmetry == "sign" and sign_canon == "symmetrize") else None

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
            return scale_normalize(x, self.eps)
        return x


class InvariantNet(nn.Module):
    """``phi([c(x) || extra])``: an invariant vector of an equivariant input (plus invariant extras)."""

    def __init__(
        self,
        symmetry: str,
        d_in: int,
        d_extra: int,
        d_hid: int,
        d_out: int,
        sign_canon: str,
        layer_norm: bool,
        eps: float = 0.0,
        rho_hidden: int | None = None,
    ):
        super().__init__()
        self.canon = Canonicalizer(symmetry, d_in, sign_canon, layer_norm, eps, rho_hidden)
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
        return self.phi.lin2(self.phi.hidden(F.linear(u, *self.merged_first_layer())))

    def merged_first_layer(self) -> tuple[Tensor, Tensor]:
        """``phi.lin1 o rho.lin2`` as one affine map (no non-linearity in between; ``rho``'s
        output bias enters twice, once per sign): ``(W, b)`` on the summed hidden ``u``."""
        rho, lin1 = self.canon.rho, self.phi.lin1
        return lin1.weight @ rho.lin2.weight, lin1.bias + 2 * (lin1.weight @ rho.lin2.bias)

    def forward_reference(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        c = self.canon.forward_reference(x)
        return self.phi(c if extra is None else torch.cat([c, extra], -1))


class ScaleEq(nn.Module):
    """Scale/sign-equivariant map ``y = Gamma x * Inv(x)`` (bias-free linear times an invariant).

    If ``x -> q x`` then ``y -> q y``: ``Gamma`` is linear without bias and ``Inv`` is invariant.
    """

    def __init__(
        self,
        symmetry: str,
        d_in: int,
        d_out: int,
        d_hid: int,
        sign_canon: str,
        layer_norm: bool,
        d_extra: int = 0,
        eps: float = 0.0,
        rho_hidden: int | None = None,
    ):
        super().__init__()
        self.gamma = nn.Linear(d_in, d_out, bias=False)
        self.inv = InvariantNet(symmetry, d_in, d_extra, d_hid, d_out, sign_canon, layer_norm, eps, rho_hidden)

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

    def message_params(self, w_e: Tensor) -> ScaleEqMessageParams:
        """This block (plus the edge projection ``W_e``) as the arguments of the fused op
        :func:`~scalegmn_ext.ops.scale_eq_message`, which computes
        ``sum_i self((W_e e_i) * hv_i)`` without per-edge intermediates."""
        inv, canon = self.inv, self.inv.canon
        phi = inv.phi
        ln2_w, ln2_b = _norm_affine(phi)
        if canon.rho is not None:
            rho = canon.rho
            ln1_w, ln1_b = _norm_affine(rho)
            w_f, b_f = inv.merged_first_layer()
            return ScaleEqMessageParams(
                w_e,
                torch.cat([self.gamma.weight, rho.lin1.weight], 0),
                rho.lin1.bias,
                ln1_w,
                ln1_b,
                w_f,
                b_f,
                ln2_w,
                ln2_b,
                phi.lin2.weight,
                phi.lin2.bias,
                int(MessageMode.SIGN_SYMMETRIZE),
                canon.eps,
            )
        mode = {"sign": MessageMode.SIGN_ABS, "scale": MessageMode.SCALE}.get(canon.symmetry, MessageMode.PLAIN)
        return ScaleEqMessageParams(
            w_e,
            self.gamma.weight,
            None,
            None,
            None,
            phi.lin1.weight,
            phi.lin1.bias,
            ln2_w,
            ln2_b,
            phi.lin2.weight,
            phi.lin2.bias,
            int(mode),
            canon.eps,
        )


def _norm_affine(mlp: MLP) -> tuple[Tensor | None, Tensor | None]:
    """``(weight, bias)`` of an MLP's LayerNorm, or ``(None, None)`` without one."""
    n = mlp.norm
    return (n.weight, n.bias) if isinstance(n, nn.LayerNorm) else (None, None)


class GatedBackwardMessage(nn.Module):
    """Backward (bidirectional) message for the positive-scale group, exact and bounded.

    Edge ``(i, j)`` of weight layer ``l`` goes from neuron ``j`` (layer ``l-1``) to neuron ``i``
    (layer ``l``); its state scales as ``e_ij -> (q_i / q_j) e_ij``. The backward message into
    ``j`` must scale with ``q_j``. Anything built from ``e_ij`` and ``h_i`` that scales with
    ``q_j`` is homogeneous of negative degree in ``e`` (e.g. ``e / ||e||^2``), hence unbounded near
    ``e = 0``: tiny weights turn into huge messages and rounding is amplified without limit. So
    the ``q_j`` factor is carried by the receiver's own state and everything about the edge and
    the sender enters through a bounded invariant:

    * ``a_ij = (W_e e_ij) * (W_r h_j)`` and ``b_i = W_s h_i`` both scale with ``q_i``;
    * ``z_ij = [a_ij, b_i] / ||[a_ij, b_i]||`` is invariant, ``||z|| <= 1``, and still tells the
      relative size of edge-times-receiver against the sender (``z = 0`` when both vanish);
    * hidden ``j``: ``m_j = (Gamma h_j) * sum_i phi(z_ij)`` scales with ``q_j``;
      input ``j`` (invariant): ``m_j = sum_i phi_io(z_ij)``.

    ``phi`` is an MLP ``2d -> d -> d``; its second layer is applied after the sum over ``i``
    (``sum_i (W_2 v_i + b_2) = W_2 sum_i v_i + deg_j b_2``). The edge projection ``W_e`` belongs
    to the layer (``bw_e``) so that the layer-block path can factor it through layer-0 edge blocks.
    """

    def __init__(self, d: int, layer_norm: bool):
        super().__init__()
        self.recv = nn.Linear(d, d, bias=False)  # W_r (receiver j)
        self.send = nn.Linear(d, d, bias=False)  # W_s (sender i)
        self.gamma = nn.Linear(d, d, bias=False)
        self.phi_hidden = MLP(2 * d, d, d, layer_norm)
        self.phi_io = MLP(2 * d, d, d, layer_norm)

    def sender_terms(self, h_send: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per sender node ``i``: ``(b_max, b_sq, b~)`` with ``b = W_s h_i``, ``b_max = max |b|``
        (detached), ``b~ = b / b_max`` and ``b_sq = ||b~||^2``."""
        b = self.send(h_send)
        b_max = row_max(b)
        b_t = b / nonzero_or_one(b_max)
        return b_max, b_t.pow(2).sum(-1, keepdim=True), b_t

    def project_sender(self, b_t: Tensor, io: bool) -> Tensor:
        """The sender half of ``phi``'s first layer, once per node instead of once per edge."""
        return (self.phi_io if io else self.phi_hidden).partial_first_layer(b_t, b_t.shape[-1])

    def edge_terms(self, a: Tensor, b_max: Tensor, b_sq: Tensor, pb: Tensor, io: bool) -> Tensor:
        """``SiLU(LN(phi.lin1(z_ij)))`` per edge (all arguments broadcast against each other;
        ``pb`` from :meth:`project_sender`)."""
        phi = self.phi_io if io else self.phi_hidden
        a_bar, r, inv_den = joint_scale_normalize_terms(a, b_max, b_sq)
        t = (phi.partial_first_layer(a_bar, 0) + r * pb) * inv_den + phi.lin1.bias
        return phi.hidden(t)

    def finish(self, v_sum: Tensor, degree, h_recv: Tensor, io: bool) -> Tensor:
        """Message into each receiver from the per-edge terms summed over its senders."""
        phi = self.phi_io if io else self.phi_hidden
        out = F.linear(v_sum, phi.lin2.weight) + degree * phi.lin2.bias
        return out if io else self.gamma(h_recv) * out

    def forward_reference(self, e_proj: Tensor, h_recv: Tensor, h_send: Tensor, io: bool) -> Tensor:
        """Per-edge message (before the sum), straight from the definition: the test oracle."""
        phi = self.phi_io if io else self.phi_hidden
        z = scale_normalize(torch.cat([e_proj * self.recv(h_recv), self.send(h_send)], -1))
        m = phi(z)
        return m if io else self.gamma(h_recv) * m
