"""``pointlib.predict``: recorded preprocessing, replay on files, warnings, certificate, outputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pointlib
from pointlib.engine import load_checkpoint, model_from_checkpoint
from pointlib.engine.checkpoint import CheckpointError, save_checkpoint
from pointlib.engine.config import config_from_dict, config_to_dict
from pointlib.engine.predict import Predictor, format_predictions, read_input
from pointlib.engine.preprocessing import Preprocessing, prepare_cloud
from pointlib.engine.rotations import mix_seed
from pointlib.geometry import apply_rotation, random_rotation
from pointlib.io import write_point_cloud

TINY = {
    "name": "tiny-predict",
    "model": {"name": "risurconv_cls_tiny", "kwargs": {"faithful": False}},
    "data": {
        "name": "synthetic",
        "num_points": 64,
        "batch_size": 8,
        "eval_batch_size": 16,
        "val_fraction": 0.2,
        "kwargs": {"samples_per_class": 3},
    },
    "augment": {"rotation": "z"},
    "train": {"epochs": 1, "progress": False, "tensorboard": False},
    "eval": {"rotations": ["none"], "num_rotations": 1},
}


def _strict(text: str):
    def bad(token: str):
        raise ValueError(f"non-strict JSON constant {token}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pointlib.engine import train

    root = tmp_path_factory.mktemp("predict")
    raw = dict(TINY, data=dict(TINY["data"], root=str(root / "cache")))
    cfg = config_from_dict(raw)
    train(cfg, root / "run")
    return root


@pytest.fixture(scope="module")
def test_items(run):
    from pointlib.datasets import SyntheticShapes

    ds = SyntheticShapes(run / "cache", "test", 64, samples_per_class=3)
    return ds


def test_checkpoint_records_preprocessing(run):
    state = load_checkpoint(run / "run" / "best.pt")
    rec = state["preprocessing"]
    assert rec["num_points"] == 64 and rec["normalize"] is True
    assert rec["normals"] == "mesh" and rec["use_normals"] is True
    assert rec["up_axis"] == "z" and rec["dataset"] == "synthetic"
    # the training inputs are unit-sphere normalised: every radius is 1
    assert rec["radius"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_file_in_cad_units_is_preprocessed_like_the_training_data(run, test_items, tmp_path):
    """A test cloud scaled x250 and moved gives the logits of the dataset item itself."""
    state = load_checkpoint(run / "run" / "best.pt")
    model = model_from_checkpoint(state).eval()
    item = test_items[5]
    raw = item["xyz"] * 250.0 + torch.tensor([40.0, -7.0, 300.0])
    path = write_point_cloud(tmp_path / "shape.ply", raw, item["normals"])
    (pred,) = pointlib.predict(run / "run" / "best.pt", path, top_k=3)
    with torch.no_grad():
        ref = model(item["xyz"][None], item["normals"][None])[0]
    assert torch.allclose(pred.logits, ref, atol=1e-4)
    probs = torch.softmax(ref.double(), -1)
    assert pred.label == test_items.classes[int(probs.argmax())]
    assert pred.top_k[0][1] == pytest.approx(float(probs.max()), rel=1e-4)
    assert len(pred.top_k) == 3 and pred.top_k[0][1] >= pred.top_k[1][1] >= pred.top_k[2][1]
    assert pred.normals == "file" and pred.points_in == 64 and pred.warnings == []


def test_warnings_for_inputs_unlike_the_training_data(run, test_items, tmp_path):
    item = test_items[0]
    sparse = write_point_cloud(tmp_path / "sparse.xyz", item["xyz"][:20])  # 20 points, no normals
    (pred,) = pointlib.predict(run / "run", [sparse])
    text = " ".join(pred.warnings)
    assert "20 points, fewer than the 64" in text
    assert "no normals" in text and "estimated" in text
    assert pred.normals == "estimated" and pred.num_points == 64


def test_scale_and_offset_warnings_when_the_model_does_not_normalise():
    p = Preprocessing(num_points=32, normalize=False, radius=[0.8, 1.0, 1.2], centroid=[0, 0, 0.1])
    xyz = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    xyz = xyz / xyz.norm(dim=-1).max()
    ok = prepare_cloud(xyz, None, p)
    assert ok.warnings == [] or all("radius" not in w for w in ok.warnings)
    big = prepare_cloud(xyz * 1000, None, p)
    assert any("outside the training range" in w for w in big.warnings)
    moved = prepare_cloud(xyz + 5.0, None, p)
    assert any("centroid lies" in w for w in moved.warnings)
    assert torch.equal(big.xyz, big.raw_xyz)  # not rescaled: this model takes coordinates as is


def test_prepare_rejects_bad_points():
    p = Preprocessing(num_points=8)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        prepare_cloud(torch.zeros(10, 2), None, p)
    bad = torch.zeros(10, 3)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        prepare_cloud(bad, None, p)


def test_mesh_inputs_are_sampled_with_face_normals(run, tmp_path):
    off = tmp_path / "box.off"
    v = [[x, y, z] for x in (0, 2) for y in (0, 1) for z in (0, 3)]
    faces = [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]  # fmt: skip
    off.write_text(
        "OFF\n8 12 0\n"
        + "".join(f"{a} {b} {c}\n" for a, b, c in v)
        + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces)
    )
    xyz, normals, source = read_input(off, mesh_samples=500)
    assert source == "mesh" and xyz.shape == (500, 3) and normals is not None
    assert torch.allclose(normals.norm(dim=-1), torch.ones(500), atol=1e-5)
    (pred,) = pointlib.predict(run / "run", off)
    assert pred.normals == "mesh" and pred.points_in == 64  # mesh_samples recorded = 64 here


def test_certificate_matches_a_manual_rotation_check(run, test_items, tmp_path):
    item = test_items[3]
    path = write_point_cloud(tmp_path / "c.npz", item["xyz"], item["normals"])
    (pred,) = pointlib.predict(run / "run", path, rotations=3, seed=11)
    cert = pred.certificate
    assert cert is not None and cert.rotations == 3 and cert.seed == 11
    model = model_from_checkpoint(load_checkpoint(run / "run" / "best.pt")).eval()
    worst, agree = 0.0, 0
    with torch.no_grad():
        base = model(item["xyz"][None], item["normals"][None])[0]
        for c in range(3):
            g = torch.Generator().manual_seed(mix_seed(11, c))
            R = random_rotation(1, g, dtype=torch.float64)[0].float()
            rx, rn = apply_rotation(R, item["xyz"], item["normals"])
            out = model(rx[None], rn[None])[0]
            worst = max(worst, float((out - base).abs().max()))
            agree += int(out.argmax() == base.argmax())
    assert cert.max_abs_dlogit == pytest.approx(worst, rel=1e-3, abs=1e-6)
    assert cert.agreement == pytest.approx(agree / 3)


def test_batch_csv_and_strict_json(run, test_items, tmp_path):
    paths = []
    for i in range(3):
        it = test_items[i]
        paths.append(write_point_cloud(tmp_path / f"s{i}.txt", it["xyz"], it["normals"]))
    preds = pointlib.predict(run / "run", paths, top_k=2, rotations=1)
    assert [p.source for p in preds] == [str(p) for p in paths]
    data = _strict(format_predictions(preds, "json"))
    assert [d["source"] for d in data] == [str(p) for p in paths]
    assert all(len(d["top_k"]) == 2 and "certificate" in d for d in data)
    rows = list(csv.DictReader(io.StringIO(format_predictions(preds, "csv"))))
    assert len(rows) == 3 and rows[1]["label"] == preds[1].label
    assert rows[0]["rotations"] == "1"
    text = format_predictions(preds, "text")
    assert "invariance over 1 Haar rotations" in text and preds[2].label in text
    with pytest.raises(ValueError, match="format must be"):
        format_predictions(preds, "yaml")


def test_old_checkpoint_without_record_is_inferred_and_says_so(run, tmp_path):
    state = load_checkpoint(run / "run" / "best.pt")
    state.pop("preprocessing")
    state.pop("path")
    save_checkpoint(tmp_path / "old.pt", state)
    pr = Predictor(tmp_path / "old.pt")
    assert not pr.preprocessing.recorded and pr.preprocessing.num_points == 64
    assert "predates recorded preprocessing" in pr.notes[0]
    state.pop("config")
    save_checkpoint(tmp_path / "older.pt", state)
    with pytest.raises(CheckpointError, match="neither its input preprocessing nor"):
        Predictor(tmp_path / "older.pt")


def test_part_segmentation_counts_and_coloured_ply(tmp_path):
    from pointlib.io import read_point_cloud
    from pointlib.models import create_model

    seg = [[0, 1], [2, 3, 4]]
    model = create_model("risurconv_partseg_tiny", num_parts=5, num_categories=2)
    cfg = config_from_dict(
        {"task": "partseg", "model": {"name": "risurconv_partseg_tiny"}, "data": {"num_points": 64}}
    )
    save_checkpoint(
        tmp_path / "seg.pt",
        {
            "model_name": model.model_name,
            "model_kwargs": model.model_kwargs,
            "model": model.state_dict(),
            "config": config_to_dict(cfg),
            "classes": ["Mug", "Lamp"],
            "seg_classes": seg,
        },
    )
    rng = np.random.default_rng(0)
    cloud = write_point_cloud(tmp_path / "lamp.ply", rng.normal(size=(200, 3)).astype("f4"))
    with pytest.raises(ValueError, match=r"needs the object category.*Mug, Lamp"):
        pointlib.predict(tmp_path / "seg.pt", cloud)
    with pytest.raises(ValueError, match="unknown category 'Cup'"):
        pointlib.predict(tmp_path / "seg.pt", cloud, category="Cup")
    (pred,) = pointlib.predict(
        tmp_path / "seg.pt", cloud, category="lamp", parts_dir=tmp_path, rotations=2
    )
    assert pred.certificate is not None and pred.certificate.rotations == 2
    assert 0.0 <= pred.certificate.agreement <= 1.0 and pred.certificate.max_abs_dlogit >= 0.0
    assert pred.task == "partseg" and pred.label == "Lamp"
    assert set(pred.parts) == {"Lamp:0", "Lamp:1", "Lamp:2"}
    assert sum(pred.parts.values()) == 64
    assert set(pred.point_parts.tolist()) <= {2, 3, 4}
    ply = read_point_cloud(pred.parts_ply)
    assert Path(pred.parts_ply).name == "lamp_parts.ply"
    assert ply["xyz"].shape == (64, 3) and ply["colors"].shape == (64, 3)
    # the same part gets the same colour
    colors = {tuple(c) for c in ply["colors"][pred.point_parts == pred.point_parts[0]].tolist()}
    assert len(colors) == 1


def test_bad_inputs_name_the_file(run, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ply"):
        pointlib.predict(run / "run", tmp_path / "nope.ply")
    weird = tmp_path / "cloud.las"
    weird.write_text("x")
    with pytest.raises(ValueError, match=r"cloud.las: unknown file type"):
        pointlib.predict(run / "run", weird)
    broken = tmp_path / "broken.txt"
    broken.write_text("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match=r"broken\.txt"):
        pointlib.predict(run / "run", broken)
    with pytest.raises(ValueError, match="no inputs"):
        pointlib.predict(run / "run", [])


def test_recorded_spread_of_unnormalised_training_data(run):
    """A dataset that keeps its coordinates records their radius / centroid spread, read from the
    stored arrays without loading an item."""
    from pointlib.datasets import SyntheticShapes
    from pointlib.engine.data import bundle_from_datasets
    from pointlib.engine.preprocessing import record_preprocessing

    class Counting(SyntheticShapes):
        loads = 0

        def __getitem__(self, i):
            Counting.loads += 1
            return super().__getitem__(i)

    cfg = config_from_dict(dict(TINY, data=dict(TINY["data"], root=str(run / "cache"))))
    kw = {"samples_per_class": 3, "normalize": False}
    train_set = Counting(run / "cache", "train", 64, **kw)
    data = bundle_from_datasets(cfg, train_set, SyntheticShapes(run / "cache", "test", 64, **kw))
    rec = record_preprocessing(cfg, data)
    assert Counting.loads == 0 and rec["normalize"] is False
    pts = train_set._xyz[data.train.indices].astype(np.float64)
    radius = np.linalg.norm(pts - pts.mean(1, keepdims=True), axis=-1).max(1)
    assert rec["radius"] == pytest.approx(np.percentile(radius, [1, 50, 99]).tolist())
    assert rec["radius"][0] > 0.3 and rec["radius"][2] < 5.0  # raw SyntheticShapes sizes
