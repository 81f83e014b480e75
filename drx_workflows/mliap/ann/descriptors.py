"""Chebyshev descriptors of Artrith, Urban and Ceder, Phys. Rev. B 96, 014112 (2017), in torch.

Each atom i is described by four blocks of expansion coefficients::

    radial      G_a   = sum_j        T_a(2 R_ij / Rc_rad - 1) fc(R_ij)
    angular     G_a   = sum_{j<k}    T_a(cos theta_ijk) fc(R_ij) fc(R_ik)
    (structural part: every neighbour with weight 1; compositional part: the same sums
     with each neighbour j weighted by its species weight w_j, angular terms by w_j w_k)

with T_a the Chebyshev polynomials of the first kind, a = 0..order, and the cosine cutoff
fc(R) = 0.5 (cos(pi R / Rc) + 1) for R < Rc, 0 beyond.  The compositional part is what
lets one fixed-length vector describe an 11-element chemistry (its length does not grow
with the number of species); it is dropped when there is a single species.

Species weights are spread symmetrically around 0 (..., -2, -1, [0,] 1, 2, ...) in the
order of atomic number, as aenet does, so no species is favoured by its position in the list.

Everything after the neighbour list is torch, so energies built on these descriptors are
differentiable with respect to positions and forces come out of autograd exactly.  The
neighbour list (ase, periodic images as integer shift vectors) is computed once per
structure; distances are recomputed in torch from positions + shift @ cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# A chunk of central atoms is sized so that its neighbour-pair matrices stay below this many
# entries: it bounds the memory autograd keeps for large cells (180 atoms x 130^2 at 6.5 A).
MAX_PAIR_ENTRIES = 1_000_000


def species_weights(elements: list[str]) -> dict[str, float]:
    """aenet-style symmetric weights: 2 -> (-1, 1); 3 -> (-1, 0, 1); 4 -> (-2, -1, 1, 2)."""
    from ase.data import atomic_numbers

    ordered = sorted(elements, key=lambda e: atomic_numbers[e])
    n = len(ordered)
    if n % 2:
        values = list(range(-(n // 2), n // 2 + 1))
    else:
        values = [v for v in range(-(n // 2), n // 2 + 1) if v != 0]
    return {e: float(v) for e, v in zip(ordered, values)}


@dataclass(frozen=True)
class DescriptorSpec:
    radial_cutoff: float = 8.0
    radial_order: int = 16
    angular_cutoff: float = 6.5
    angular_order: int = 4
    compositional: bool = True

    @property
    def n_features(self) -> int:
        n = (self.radial_order + 1) + (self.angular_order + 1)
        return 2 * n if self.compositional else n

    @property
    def cutoff(self) -> float:
        return max(self.radial_cutoff, self.angular_cutoff)


@dataclass
class Neighbours:
    """Pairs of one structure, sorted by central atom, with their periodic shifts.

    ``pair_start[c]:pair_start[c+1]`` are the pairs of central atom c.  Only integers are
    stored: distances depend on positions and are recomputed (with autograd) on demand.
    """

    n_atoms: int
    i: np.ndarray  # (P,) central atom
    j: np.ndarray  # (P,) neighbour
    shift: np.ndarray  # (P, 3) integer image of j
    pair_start: np.ndarray  # (N+1,)
    angular_counts: np.ndarray  # (N,) neighbours within the angular cutoff, for chunk sizes


def neighbours(positions: np.ndarray, cell: np.ndarray, cutoff: float, angular_cutoff: float) -> Neighbours:
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(positions=positions, cell=cell, pbc=True)
    i, j, shift, d = neighbor_list("ijSd", atoms, cutoff)
    order = np.lexsort((j, i))
    i, j, shift, d = i[order], j[order], shift[order], d[order]
    n = len(positions)
    pair_start = np.searchsorted(i, np.arange(n + 1))
    angular_counts = np.bincount(i[d < angular_cutoff], minlength=n)
    return Neighbours(n, i.astype(np.int64), j.astype(np.int64), shift.astype(np.float64), pair_start, angular_counts)


def _chebyshev(x: torch.Tensor, order: int) -> torch.Tensor:
    """(..., order+1) values T_0..T_order at x, by the three-term recurrence."""
    t = [torch.ones_like(x), x]
    for _ in range(2, order + 1):
        t.append(2.0 * x * t[-1] - t[-2])
    return torch.stack(t[: order + 1], dim=-1)


def _cutoff_fn(r: torch.Tensor, rc: float) -> torch.Tensor:
    inside = r < rc
    # clamp keeps cos() of out-of-range distances harmless; the mask zeroes them and their gradient
    return torch.where(inside, 0.5 * (torch.cos(torch.pi * torch.clamp(r, max=rc) / rc) + 1.0), torch.zeros_like(r))


def chunks(nb: Neighbours, max_entries: int = MAX_PAIR_ENTRIES) -> list[tuple[int, int]]:
    """Ranges of central atoms whose angular pair matrices fit in ``max_entries`` (at least one atom each)."""
    per_atom = nb.angular_counts**2  # the dense (K, K) pair matrix of each centre
    out, start, acc = [], 0, 0
    for c in range(nb.n_atoms):
        if c > start and acc + per_atom[c] > max_entries:
            out.append((start, c))
            start, acc = c, 0
        acc += per_atom[c]
    out.append((start, nb.n_atoms))
    return out


def descriptors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    weights: torch.Tensor,
    nb: Neighbours,
    spec: DescriptorSpec,
    centres: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(n_centres, n_features) descriptors of the central atoms ``centres`` = (first, end).

    ``positions`` (N, 3) may require grad; ``weights`` (N,) are the species weights.
    """
    c0, c1 = centres if centres is not None else (0, nb.n_atoms)
    p0, p1 = int(nb.pair_start[c0]), int(nb.pair_start[c1])
    dtype, device = positions.dtype, positions.device
    i = torch.as_tensor(nb.i[p0:p1], device=device)
    j = torch.as_tensor(nb.j[p0:p1], device=device)
    shift = torch.as_tensor(nb.shift[p0:p1], dtype=dtype, device=device)
    vec = positions[j] - positions[i] + shift @ cell
    r = torch.linalg.norm(vec, dim=1)
    w_j = weights[j]
    r_np = r.detach().cpu().numpy()
    zero = torch.zeros((), dtype=dtype, device=device)

    # radial, dense per centre (centres, K) with zero-weight padding: a reduction over a
    # padded axis is much cheaper on CPU than index_add of pair rows onto their centres
    idx, valid = _padded_neighbours(nb, c0, c1, r_np, spec.radial_cutoff, p0)
    idx = torch.as_tensor(idx, device=device)
    valid = torch.as_tensor(valid, device=device)
    fc_r = torch.where(valid, _cutoff_fn(r, spec.radial_cutoff)[idx], zero)
    x = torch.clamp(2.0 * r[idx] / spec.radial_cutoff - 1.0, -1.0, 1.0)
    t_r = _chebyshev(x, spec.radial_order)
    rad = torch.einsum("ck,cka->ca", fc_r, t_r)
    if spec.compositional:
        rad_c = torch.einsum("ck,cka->ca", fc_r * torch.where(valid, w_j[idx], zero), t_r)

    # angular, dense per centre: a (centres, K, K) matrix of neighbour pairs, K the largest
    # number of angular neighbours in the chunk.  Matrix products beat gathering ~10^5
    # explicit triplets and scattering them back; padding carries zero cutoff weight.
    idx, valid = _padded_neighbours(nb, c0, c1, r_np, spec.angular_cutoff, p0)
    idx = torch.as_tensor(idx, device=device)
    valid = torch.as_tensor(valid, device=device)
    unit = vec / r[:, None]
    u = torch.where(valid[..., None], unit[idx], torch.ones((), dtype=dtype, device=device))
    fc_a = torch.where(valid, _cutoff_fn(r, spec.angular_cutoff)[idx], zero)
    cos = torch.clamp(u @ u.transpose(1, 2), -1.0, 1.0)
    upper = torch.triu(torch.ones(cos.shape[1:], dtype=torch.bool, device=device), diagonal=1)
    pair_w = torch.where(upper, fc_a[:, :, None] * fc_a[:, None, :], zero)
    t_a = _chebyshev(cos, spec.angular_order)  # (centres, K, K, order+1)
    ang = torch.einsum("cjk,cjka->ca", pair_w, t_a)
    if not spec.compositional:
        return torch.cat([rad, ang], dim=1)
    wk = torch.where(valid, w_j[idx], zero)
    ang_c = torch.einsum("cjk,cjka->ca", pair_w * wk[:, :, None] * wk[:, None, :], t_a)
    return torch.cat([rad, ang, rad_c, ang_c], dim=1)


def _padded_neighbours(nb: Neighbours, c0: int, c1: int, r: np.ndarray, rc: float, p0: int):
    """(centres, K) indices into the chunk's pairs of each centre's neighbours within ``rc``, and a validity mask."""
    lists = []
    for c in range(c0, c1):
        s, e = int(nb.pair_start[c]) - p0, int(nb.pair_start[c + 1]) - p0
        lists.append(s + np.flatnonzero(r[s:e] < rc))
    k = max(1, max(len(x) for x in lists))
    idx = np.zeros((len(lists), k), dtype=np.int64)
    valid = np.zeros((len(lists), k), dtype=bool)
    for row, x in enumerate(lists):
        idx[row, : len(x)] = x
        valid[row, : len(x)] = True
    return idx, valid


def _chebyshev_and_derivative(x: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T_0..T_order at x and their derivatives T_a' = a U_{a-1} (U: second kind)."""
    t = [torch.ones_like(x), x]
    u = [torch.ones_like(x), 2.0 * x]
    for _ in range(2, order + 1):
        t.append(2.0 * x * t[-1] - t[-2])
        u.append(2.0 * x * u[-1] - u[-2])
    dt = [torch.zeros_like(x)] + [a * u[a - 1] for a in range(1, order + 1)]
    return torch.stack(t[: order + 1], dim=-1), torch.stack(dt, dim=-1)


def _cutoff_and_derivative(r: torch.Tensor, rc: float) -> tuple[torch.Tensor, torch.Tensor]:
    inside = r < rc
    arg = torch.pi * torch.clamp(r, max=rc) / rc
    zero = torch.zeros_like(r)
    return (
        torch.where(inside, 0.5 * (torch.cos(arg) + 1.0), zero),
        torch.where(inside, -0.5 * torch.pi / rc * torch.sin(arg), zero),
    )


@torch.no_grad()
def descriptor_jacobian(
    positions: torch.Tensor,
    cell: torch.Tensor,
    weights: torch.Tensor,
    nb: Neighbours,
    spec: DescriptorSpec,
    centres: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(n_centres, N, n_features, 3): d G_i / d R_n for the central atoms ``centres``, analytically.

    Force training needs this once per structure: forces are then a contraction with the
    nets' dE/dG each epoch, instead of rebuilding the descriptors under autograd every
    step.  Derivation, with u = unit pair vectors, fc' the cutoff's derivative:
      radial   dG_a/dvec_k = (T_a'(x) 2/Rc fc_k + T_a(x) fc'_k) u_k
      angular  G_a = 1/2 sum_{j!=k} fc_j fc_k T_a(cos_jk), so
               dG_a/dvec_j = sum_{k!=j} fc'_j fc_k T_a u_j + fc_j fc_k T_a' (u_k - cos_jk u_j) / r_j
    (compositional blocks: the same with w_k, resp. w_j w_k).  vec_p = R_j - R_i + shift,
    so each pair's derivative goes to its neighbour j with + and to the centre i with -.
    The test suite checks this against autograd.
    """
    c0, c1 = centres if centres is not None else (0, nb.n_atoms)
    p0, p1 = int(nb.pair_start[c0]), int(nb.pair_start[c1])
    dtype = positions.dtype
    n_c, n_atoms = c1 - c0, nb.n_atoms
    i = torch.as_tensor(nb.i[p0:p1])
    j = torch.as_tensor(nb.j[p0:p1])
    shift = torch.as_tensor(nb.shift[p0:p1], dtype=dtype)
    vec = positions[j] - positions[i] + shift @ cell
    r = torch.linalg.norm(vec, dim=1)
    unit = vec / r[:, None]
    w_j = weights[j]
    r_np = r.numpy()
    zero = torch.zeros((), dtype=dtype)
    nr, na = spec.radial_order + 1, spec.angular_order + 1
    d_pair = torch.zeros(p1 - p0, spec.n_features, 3, dtype=dtype)

    # radial: one (F_rad, 3) block per pair; fc and fc' vanish beyond the radial cutoff
    fc, dfc = _cutoff_and_derivative(r, spec.radial_cutoff)
    x = torch.clamp(2.0 * r / spec.radial_cutoff - 1.0, -1.0, 1.0)
    t, dt = _chebyshev_and_derivative(x, spec.radial_order)  # (P, nr)
    d_r = dt * (2.0 / spec.radial_cutoff) * fc[:, None] + t * dfc[:, None]  # dG/dr per pair
    g_rad = d_r[:, :, None] * unit[:, None, :]  # (P, nr, 3)
    d_pair[:, :nr] = g_rad
    if spec.compositional:
        d_pair[:, nr + na : 2 * nr + na] = g_rad * w_j[:, None, None]

    # angular, dense per centre as in descriptors()
    idx, valid = _padded_neighbours(nb, c0, c1, r_np, spec.angular_cutoff, p0)
    idx_t, valid_t = torch.as_tensor(idx), torch.as_tensor(valid)
    u = torch.where(valid_t[..., None], unit[idx_t], torch.ones((), dtype=dtype))  # (c, K, 3)
    rk = torch.where(valid_t, r[idx_t], torch.ones((), dtype=dtype))
    fca, dfca = _cutoff_and_derivative(r, spec.angular_cutoff)
    fk = torch.where(valid_t, fca[idx_t], zero)
    dfk = torch.where(valid_t, dfca[idx_t], zero)
    cos = torch.clamp(u @ u.transpose(1, 2), -1.0, 1.0)
    k = cos.shape[1]
    offdiag = ~torch.eye(k, dtype=torch.bool)
    t, dt = _chebyshev_and_derivative(cos, spec.angular_order)  # (c, K, K, na)
    wk = torch.where(valid_t, w_j[idx_t], zero)
    outs = []
    for wvec in ([None, wk] if spec.compositional else [None]):
        pair_w = torch.ones_like(cos) if wvec is None else wvec[:, :, None] * wvec[:, None, :]
        pair_w = torch.where(offdiag, pair_w, zero)
        a_m = (pair_w * fk[:, None, :])[..., None] * t  # (c, j, k, na): fc_k T_a, weighted
        b_m = (pair_w * (fk[:, :, None] * fk[:, None, :]) / rk[:, :, None])[..., None] * dt
        coef_u_j = dfk[:, :, None] * a_m.sum(2) - (b_m * cos[..., None]).sum(2)  # (c, j, na)
        grad = coef_u_j[..., None] * u[:, :, None, :] + torch.einsum("cjka,ckx->cjax", b_m, u)
        outs.append(grad)  # (c, K, na, 3)
    flat_idx = idx_t[valid_t]
    for block, grad in enumerate(outs):
        start = nr if block == 0 else 2 * nr + na
        d_pair[flat_idx, start : start + na] += grad[valid_t]

    # pairs -> atoms: + on the neighbour, - on the centre
    local = i - c0
    jac = torch.zeros(n_c * n_atoms, spec.n_features, 3, dtype=dtype)
    jac.index_add_(0, local * n_atoms + j, d_pair)
    jac.index_add_(0, local * n_atoms + i, -d_pair)
    return jac.reshape(n_c, n_atoms, spec.n_features, 3)
