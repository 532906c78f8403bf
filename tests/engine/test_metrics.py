"""Metrics against hand-computed values (ShapeNetPart mIoU convention included)."""

from __future__ import annotations

import math

import pytest
import torch

from pointlib.engine.metrics import (
    ClassificationMeter,
    PartSegMeter,
    confusion_matrix,
    mean_class_accuracy,
    overall_accuracy,
    restrict_to_category,
    shape_iou,
)


def test_classification_by_hand():
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 0, 2])
    cm = confusion_matrix(pred, target, 4)
    assert cm.tolist() == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert overall_accuracy(cm) == pytest.approx(5 / 7)
    # class 3 is absent from the targets and does not count
    assert mean_class_accuracy(cm) == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    sk = pytest.importorskip("sklearn.metrics")
    assert mean_class_accuracy(cm) == pytest.approx(sk.balanced_accuracy_score(target, pred))


def test_classification_meter_and_state_roundtrip():
    m = ClassificationMeter(3)
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [2.0, 0, 0]])
    m.update(logits[:2], torch.tensor([0, 2]), loss=1.0)
    m.update(logits[2:], torch.tensor([2, 0]), loss=3.0)
    out = m.compute()
    assert out["oa"] == pytest.approx(3 / 4) and out["loss"] == pytest.approx(2.0)
    other = ClassificationMeter(3)
    other.load_state(m.state() * 2)  # what all_reduce(SUM) over 2 equal ranks gives
    assert torch.equal(other.cm, 2 * m.cm) and other.compute()["oa"] == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="target labels"):
        confusion_matrix(torch.tensor([0]), torch.tensor([5]), 3)


SEG = [[0, 1], [2, 3, 4]]  # category 0: parts {0, 1}; category 1: parts {2, 3, 4}


def test_shape_iou_absent_part_counts_one():
    target = torch.tensor([2, 2, 3, 3])
    pred = torch.tensor([2, 3, 3, 3])
    # part 2: inter 1 / union 2; part 3: 2 / 3; part 4 absent in both -> 1
    assert shape_iou(pred, target, [2, 3, 4]) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    # predicted but absent in the target -> IoU 0 for that part
    assert shape_iou(torch.tensor([4, 4]), torch.tensor([2, 2]), [2, 3, 4]) == pytest.approx(
        (0 + 1 + 0) / 3
    )


def test_restrict_to_category():
    logits = torch.zeros(2, 2, 5)
    logits[:, :, 4] = 10.0  # the globally best part belongs to category 1 only
    logits[0, :, 1] = 1.0
    logits[1, :, 3] = 1.0
    pred = restrict_to_category(logits, torch.tensor([0, 1]), SEG)
    assert pred.tolist() == [[1, 1], [4, 4]]


def test_partseg_meter_class_and_instance_miou():
    m = PartSegMeter(SEG, num_parts=5)
    logits = torch.full((3, 4, 5), -5.0)
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0], [2, 2, 3, 3]])
    pred = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0], [2, 3, 3, 3]])
    logits.scatter_(2, pred[..., None], 5.0)
    m.update(logits, target, torch.tensor([0, 0, 1]), loss=0.5)
    s0 = 1.0  # perfect
    s1 = (3 / 4 + 0.0) / 2  # part 0: 3/4; part 1: predicted once, absent in target -> 0
    s2 = (1 / 2 + 2 / 3 + 1.0) / 3  # part 4 absent in both -> 1
    out = m.compute()
    assert out["instance_miou"] == pytest.approx((s0 + s1 + s2) / 3)
    assert out["class_miou"] == pytest.approx(((s0 + s1) / 2 + s2) / 2)
    assert out["iou/0"] == pytest.approx((s0 + s1) / 2) and out["iou/1"] == pytest.approx(s2)
    assert out["point_acc"] == pytest.approx(10 / 12)
    again = PartSegMeter(SEG, 5)
    again.load_state(m.state())
    assert again.compute() == pytest.approx(out)


def test_empty_meters_are_nan():
    assert math.isnan(ClassificationMeter(2).compute()["oa"])
    assert math.isnan(PartSegMeter(SEG, 5).compute()["instance_miou"])
