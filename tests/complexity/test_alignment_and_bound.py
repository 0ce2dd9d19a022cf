"""Kernel alignment, kernel-target alignment and the margin bound."""

import math

import numpy as np
import pytest

from sdcomplex.complexity import factorize_kernel, kernel_alignment, margin_bound, target_alignment


def test_kernel_alignment_closed_forms():
    k = np.random.default_rng(0).normal(size=(5, 5))
    k = k @ k.T
    assert kernel_alignment(k, 7 * k) == pytest.approx(1.0)
    assert kernel_alignment(np.diag([1.0, 0]), np.diag([0, 1.0])) == 0.0
    a, b = np.eye(3), np.ones((3, 3))
    assert kernel_alignment(a, b) == pytest.approx(3 / (math.sqrt(3) * 3))
    full = np.ones((2, 2, 3, 3))
    assert kernel_alignment(full, full) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different shapes"):
        kernel_alignment(a, np.ones((2, 2)))
    with pytest.raises(ValueError, match="zero kernel"):
        kernel_alignment(a, np.zeros((3, 3)))


def test_target_alignment_closed_forms():
    y = np.array([1.0, -1.0, 1.0, 1.0])
    assert target_alignment(np.outer(y, y), y) == pytest.approx(1.0)
    assert target_alignment(np.eye(4), y) == pytest.approx(4 / (2 * 4))
    y2 = np.stack([y, -y], axis=1)
    assert target_alignment(np.outer(y, y), y2) == pytest.approx(1.0)
    full = np.eye(4)[:, :, None, None] * np.eye(2)
    assert target_alignment(full, y2) == pytest.approx(8 / (math.sqrt(8) * 8))
    with pytest.raises(ValueError, match="rows"):
        target_alignment(np.eye(3), y)


@pytest.mark.parametrize("scale", [1e-200, 1e-160, 1e160, 1e250])
def test_alignments_are_scale_invariant_for_every_finite_magnitude(scale):
    # Float64 references on the unit-scale arrays (exact dot products of small numbers); the
    # alignments are invariant to each argument's scale, so the scaled inputs must give the same
    # number (they gave NaN above about 1e154 and a "zero kernel" error below about 1e-162).
    r = np.random.default_rng(1)
    a, b = r.normal(size=(2, 5, 6))
    k1, k2 = a @ a.T, b @ b.T
    y = r.normal(size=(5, 3))
    want_k = np.sum(k1 * k2) / math.sqrt(np.sum(k1 * k1) * np.sum(k2 * k2))
    want_t = np.trace(y.T @ k1 @ y) / (math.sqrt(np.sum(k1 * k1)) * np.sum(y * y))
    assert kernel_alignment(scale * k1, k2) == pytest.approx(want_k, rel=1e-12)
    assert kernel_alignment(scale * k1, scale * k2) == pytest.approx(want_k, rel=1e-12)
    assert target_alignment(scale * k1, y) == pytest.approx(want_t, rel=1e-12)
    assert target_alignment(k1, scale * y) == pytest.approx(want_t, rel=1e-12)
    assert target_alignment(scale * k1, scale * y) == pytest.approx(want_t, rel=1e-12)


def test_margin_bound_terms_by_hand():
    k = np.diag([2.0, 2.0, 2.0, 2.0])
    teacher = np.array([1.0, -1.0, 1.0, 1.0])
    labels = np.array([1.0, -1.0, -1.0, 1.0])
    student = np.array([0.9, -0.2, 0.3, 2.0])
    b = margin_bound(k, teacher, labels, student, gamma=0.5, delta=0.1)
    # margins y f: 0.9, 0.2, -0.3, 2.0 -> two of four at or below 0.5
    assert b.margin_loss == pytest.approx(0.5)
    s = 4 / 2.0
    assert b.supervision_complexity == pytest.approx(s)
    assert b.complexity_term == pytest.approx(2 / 0.5 * math.sqrt(s) * math.sqrt(8.0) / 4)
    assert b.complexity_term == pytest.approx(2 / 0.5 * b.adjusted_complexity)
    assert b.confidence_term == pytest.approx(3 * math.sqrt(math.log(2 / 0.1) / 8))
    assert b.total == pytest.approx(b.margin_loss + b.complexity_term + b.confidence_term)


def test_margin_bound_union_over_norm_is_looser():
    k = np.eye(5) * 3.0
    y = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    fixed = margin_bound(k, 0.7 * y, y, y, gamma=1.0)
    union = margin_bound(k, 0.7 * y, y, y, gamma=1.0, union_over_norm=True)
    assert union.rkhs_norm >= fixed.rkhs_norm
    assert math.log2(union.rkhs_norm).is_integer()
    assert union.delta_used < fixed.delta_used
    assert union.total >= fixed.total


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.0, "delta": 1.0}, "delta"),
    ],
)
def test_margin_bound_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        margin_bound(np.eye(2), np.ones(2), np.ones(2), np.ones(2), **kwargs)


def test_margin_bound_bad_labels_and_shapes():
    with pytest.raises(ValueError, match="-1 or \\+1"):
        margin_bound(np.eye(2), np.ones(2), np.array([0.0, 1.0]), np.ones(2), gamma=1.0)
    with pytest.raises(ValueError, match="binary"):
        margin_bound(np.eye(2), np.ones((2, 3)), np.ones(2), np.ones(2), gamma=1.0)
    with pytest.raises(ValueError, match="entries"):
        margin_bound(np.eye(2), np.ones(2), np.ones(3), np.ones(2), gamma=1.0)


def test_margin_bound_of_a_factorised_kernel_is_the_same():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 5))
    k = a @ a.T + 0.1 * np.eye(12)
    y = np.where(rng.normal(size=12) > 0, 1.0, -1.0)
    y_star, f = np.tanh(rng.normal(size=12)), rng.normal(size=12)
    fk = factorize_kernel(k)
    for union in (False, True):
        direct = margin_bound(k, y_star, y, f, gamma=0.3, union_over_norm=union)
        assert margin_bound(fk, y_star, y, f, gamma=0.3, union_over_norm=union) == direct
    with pytest.raises(ValueError, match="without ridge"):
        margin_bound(factorize_kernel(k, ridge=0.1), y_star, y, f, gamma=0.3)
    with pytest.raises(ValueError, match="diag kernel"):
        margin_bound(factorize_kernel(np.stack([k, k])), y_star, y, f, gamma=0.3)
