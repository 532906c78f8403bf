"""Independent NumPy oracle for pointlib.features, written straight from the spec formulas.

Per-centre Python loops, float64, no code shared with the library. Used by the feature tests.
"""

from __future__ import annotations

import numpy as np


def unit(a: np.ndarray) -> np.ndarray:
    """Spec §1.4: a / (|a| + 1e-7)."""
    return a / (np.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) + 1e-7)


def tangent_dirs(xs: np.ndarray, p: np.ndarray, n: np.ndarray) -> tuple[list, list]:
    """(û_j, ℓ_j) of spec §1.3 steps 1-2 (0/0 -> 0)."""
    us, ls = [], []
    for x in xs:
        v = x - p
        t = v - np.dot(v, n) * n
        ell = float(np.linalg.norm(t))
        us.append(t / ell if ell > 0 else np.zeros(3))
        ls.append(ell)
    return us, ls


def order_faithful(xs: np.ndarray, p: np.ndarray, n: np.ndarray) -> tuple[list[int], list[float]]:
    """Spec §1.3 steps 1-7 for one centre: (permutation of slots, keys in the new order).

    Ties in the sort are broken by input slot (Python's sort is stable), as the library documents.
    """
    us, ls = tangent_dirs(xs, p, n)
    jstar = int(np.argmax(ls))  # first maximum
    r = us[jstar]
    keys = []
    for j, u in enumerate(us):
        c = float(np.dot(u, r))
        sg = float(np.sign(np.dot(np.cross(u, r), n)))
        if j == 0:
            sg = 1.0  # slot-0 quirk
        keys.append(sg * c - (1 - sg))
    perm = sorted(range(len(xs)), key=lambda j: -keys[j])
    return perm, [keys[j] for j in perm]


def order_fixed(xs: np.ndarray, p: np.ndarray, n: np.ndarray) -> list[int]:
    """Fixed ordering by explicit angles: the reference first, then increasing clockwise angle
    psi about +n (atan2), points with zero tangent offset last; ties by input slot."""
    us, ls = tangent_dirs(xs, p, n)
    jstar = int(np.argmax(ls))
    r = us[jstar]
    lmax = max(ls)
    psis = []
    for j, u in enumerate(us):
        if ls[j] <= 1e-12 * lmax or lmax == 0:
            psis.append(10.0)  # after every angle
        elif j == jstar:
            psis.append(-1.0)
        else:
            psi = np.arctan2(np.dot(np.cross(u, r), n), np.dot(u, r)) % (2 * np.pi)
            psis.append(float(psi))
    return sorted(range(len(xs)), key=lambda j: psis[j])


def risp_given_order(xs, ns, p, n_p, s: int) -> np.ndarray:
    """The 14 channels of spec §1.4 for one centre whose neighbours xs/ns are already ordered."""
    K = len(xs)
    out = np.zeros((K, 14))
    for i in range(K):
        xi, xm, xp = xs[i], xs[(i - s) % K], xs[(i + s) % K]
        ni, nm, npl = ns[i], ns[(i - s) % K], ns[(i + s) % K]
        vi, vm, vp = xi - p, xm - p, xp - p
        out[i] = [
            np.linalg.norm(vi),
            unit(vi) @ n_p,
            -unit(vi) @ ni,
            unit(vi) @ unit(vm),
            unit(vm) @ n_p,
            -unit(vm) @ nm,
            unit(xm - p) @ unit(xm - xi),
            -unit(xi - xm) @ ni,
            unit(xi - xm) @ nm,
            unit(vp) @ unit(vi),
            unit(vp) @ unit(xp - xi),
            unit(xp - xi) @ npl,
            unit(vi) @ npl,
            np.cross(unit(vp), unit(vi)) @ np.cross(unit(vm), unit(vi)),
        ]
    return out


def riconv2_given_order(xs, ns, p, n_p, keys) -> np.ndarray:
    """The 8 channels of spec §7.1 for one centre (ordered neighbours and their sort keys)."""
    K = len(xs)
    out = np.zeros((K, 8))
    lim = 1 - 1e-7
    for i in range(K):
        xi, xm = xs[i], xs[(i - 1) % K]
        ni, nm = ns[i], ns[(i - 1) % K]
        vi = xi - p
        phi = keys[i] - keys[i - 1] if i > 0 else -3 - keys[K - 1]
        f3, f4 = unit(vi) @ n_p, unit(vi) @ ni
        a5 = np.arccos(np.clip(ni @ n_p, -lim, lim)) * (1 if f3 < f4 else -1)
        f6, f7 = unit(xi - xm) @ ni, unit(xi - xm) @ nm
        a8 = np.arccos(np.clip(ni @ nm, -lim, lim)) * (1 if f6 < f7 else -1)
        out[i] = [np.linalg.norm(vi), phi, f3, f4, a5, f6, f7, a8]
    return out


def risp_faithful(xyz, nrm, ctr, cnrm, idx, s, origin=None):
    """Batched faithful RISP: returns (feats (B,M,K,14), idx_ordered (B,M,K))."""
    B, M, K = idx.shape
    feats = np.zeros((B, M, K, 14))
    out_idx = np.zeros((B, M, K), dtype=np.int64)
    for b in range(B):
        for m in range(M):
            nb = idx[b, m]
            perm, _ = order_faithful(xyz[b, nb], ctr[b, m], cnrm[b, m])
            o = nb[perm]
            p = ctr[b, m] if origin is None else origin[b, m]
            feats[b, m] = risp_given_order(xyz[b, o], nrm[b, o], p, cnrm[b, m], s)
            out_idx[b, m] = o
    return feats, out_idx


def riconv2_faithful(xyz, nrm, ctr, cnrm, idx, origin=None):
    B, M, K = idx.shape
    feats = np.zeros((B, M, K, 8))
    out_idx = np.zeros((B, M, K), dtype=np.int64)
    for b in range(B):
        for m in range(M):
            nb = idx[b, m]
            perm, keys = order_faithful(xyz[b, nb], ctr[b, m], cnrm[b, m])
            o = nb[perm]
            p = ctr[b, m] if origin is None else origin[b, m]
            feats[b, m] = riconv2_given_order(xyz[b, o], nrm[b, o], p, cnrm[b, m], keys)
            out_idx[b, m] = o
    return feats, out_idx


def lra(points: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Spec §1.6 weighted PCA of `points` (J,3) about q: unit eigenvector of the smallest
    eigenvalue (sign as numpy returns it)."""
    g = points - q
    d = np.linalg.norm(g, axis=1)
    diff = d.max() - d
    w = diff / diff.sum() if diff.sum() > 0 else np.ones_like(d)
    C = np.zeros((3, 3))
    for wj, gj in zip(w, g):
        C += wj * np.outer(gj, gj)
    _, vecs = np.linalg.eigh(C)
    v = vecs[:, 0]
    return v / np.linalg.norm(v)


def third_moment(points: np.ndarray, q: np.ndarray, v: np.ndarray) -> float:
    """Σ_j w_j ((x_j - q)·v)^3 with the spec §1.6 weights."""
    g = points - q
    d = np.linalg.norm(g, axis=1)
    diff = d.max() - d
    w = diff / diff.sum() if diff.sum() > 0 else np.ones_like(d)
    return float(np.sum(w * (g @ v) ** 3))
