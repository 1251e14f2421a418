"""Real jets from scikit-hep-testdata 0.3.12 (``uproot-issue96.root``), as a per-jet table.

13,607 dijet events -> 27,214 jets x 24 features (float32):
pt, eta, phi, m, E, px, py, pz (GeV), ChgMult, TotChg, CutChg, n_tracks, then the pt fraction
and the distance dR to the jet axis of the 6 leading tracks (zero padded). The label is the
parton id of the jet: quark (1-5) -> 1, gluon (21) -> 0, unknown (-1) -> -1.

``scale_up`` makes a bigger table deterministically: the real rows (in a fixed shuffled order)
followed by bootstrapped real rows with small per-column noise (2 % of the robust sd; none for
integer columns; zeros stay zero), generated in seeded blocks so the first k rows are the same
for every requested size (joulegrid.data.scale). Each row records the real jet it came from
(``origin``) so that train/test splits keep copies of one jet on one side.
"""

from __future__ import annotations

import numpy as np

SOURCE = "scikit-hep-testdata 0.3.12: uproot-issue96.root (tree 'tree')"
N_TRACKS = 6
COLUMNS = (
    ["pt", "eta", "phi", "m", "E", "px", "py", "pz", "ChgMult", "TotChg", "CutChg", "n_tracks"]
    + [f"trk{i}_ptfrac" for i in range(N_TRACKS)]
    + [f"trk{i}_dR" for i in range(N_TRACKS)]
)
INTEGER_COLUMNS = ("ChgMult", "TotChg", "CutChg", "n_tracks")
MEV = 1e-3  # MeV -> GeV


def _kinematics(px, py, pz, e):
    pt = np.hypot(px, py)
    p = np.sqrt(px**2 + py**2 + pz**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0)), 0.0)
    phi = np.arctan2(py, px)
    m = np.sqrt(np.clip(e**2 - p**2, 0, None))
    return pt, eta, phi, m


def load_real() -> tuple[np.ndarray, np.ndarray]:
    """(X float32 [27214, 24], y int8 [27214]) from the shipped ROOT file."""
    import awkward as ak
    import skhep_testdata
    import uproot

    path = skhep_testdata.data_path("uproot-issue96.root")
    tree = uproot.open(path)["tree"]
    feats, labels = [], []
    for j in ("jet1", "jet2"):
        a = tree.arrays([f"{j}P4", f"{j}ID", f"{j}ChgMult", f"{j}TotChg", f"{j}CutChg", f"{j}TrksP4"], library="ak")
        p4 = a[f"{j}P4"]
        px = ak.to_numpy(p4["fP"]["fX"]).astype(np.float64) * MEV
        py = ak.to_numpy(p4["fP"]["fY"]).astype(np.float64) * MEV
        pz = ak.to_numpy(p4["fP"]["fZ"]).astype(np.float64) * MEV
        e = ak.to_numpy(p4["fE"]).astype(np.float64) * MEV
        pt, eta, phi, m = _kinematics(px, py, pz, e)
        trk = a[f"{j}TrksP4"]
        tpx = trk["fP"]["fX"] * MEV
        tpy = trk["fP"]["fY"] * MEV
        tpz = trk["fP"]["fZ"] * MEV
        tpt = np.sqrt(tpx**2 + tpy**2)
        teta = np.arcsinh(tpz / ak.where(tpt > 0, tpt, 1.0))
        tphi = np.arctan2(tpy, tpx)
        order = ak.argsort(tpt, axis=1, ascending=False)
        tpt, teta, tphi = tpt[order], teta[order], tphi[order]
        ntrk = ak.to_numpy(ak.num(tpt, axis=1))

        def pad(x):
            return ak.to_numpy(ak.fill_none(ak.pad_none(x, N_TRACKS, clip=True), np.nan)).astype(np.float64)

        tpt6, teta6, tphi6 = pad(tpt), pad(teta), pad(tphi)
        dphi = (tphi6 - phi[:, None] + np.pi) % (2 * np.pi) - np.pi
        dr = np.sqrt((teta6 - eta[:, None]) ** 2 + dphi**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = tpt6 / np.where(pt > 0, pt, 1.0)[:, None]
        frac = np.nan_to_num(frac, nan=0.0)
        dr = np.nan_to_num(dr, nan=0.0)
        cols = [
            pt,
            eta,
            phi,
            m,
            e,
            px,
            py,
            pz,
            ak.to_numpy(a[f"{j}ChgMult"]).astype(np.float64),
            ak.to_numpy(a[f"{j}TotChg"]).astype(np.float64),
            ak.to_numpy(a[f"{j}CutChg"]).astype(np.float64),
            ntrk.astype(np.float64),
        ]
        feats.append(np.column_stack(cols + [frac, dr]))
        pid = ak.to_numpy(a[f"{j}ID"])
        labels.append(np.where((pid >= 1) & (pid <= 5), 1, np.where(pid == 21, 0, -1)).astype(np.int8))
    x = np.concatenate(feats).astype(np.float32)
    y = np.concatenate(labels)
    assert x.shape[1] == len(COLUMNS)
    return x, y


def scale_up(x: np.ndarray, y: np.ndarray, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic table of `rows` rows from the real one: (x, y, origin); see joulegrid.data.scale."""
    from .scale import scale_table

    return scale_table(x, y, rows, seed, integer_cols=[COLUMNS.index(c) for c in INTEGER_COLUMNS])
