"""Parameter counts of the zoo against closed forms and published figures.

Counting uses ``abstract_variables`` (``jax.eval_shape``), so even ResNet-110 is instant.
"""

import pytest

from sdcomplex.models import abstract_variables, count_params, create_model


def n_params(name, num_classes, input_shape=(32, 32, 3), **overrides):
    model = create_model(name, num_classes, **overrides)
    return count_params(abstract_variables(model, input_shape)["params"])


def lenet_closed_form(k, num_classes, in_channels=3, feature_side=5):
    conv1 = 5 * 5 * in_channels * 6 * k + 6 * k
    conv2 = 5 * 5 * 6 * k * 16 * k + 16 * k
    fc1 = feature_side**2 * 16 * k * 120 * k + 120 * k
    fc2 = 120 * k * 84 * k + 84 * k
    return conv1 + conv2 + fc1 + fc2 + 84 * k * num_classes + num_classes


def cifar_resnet_closed_form(m, num_classes, w=16, shortcut="A"):
    """He et al.'s CIFAR ResNet: bias-free 3x3 convs, BN (scale + bias), dense head."""
    total = 3 * 3 * 3 * w + 2 * w  # stem conv + BN
    c_in = w
    for stage in range(3):
        c = w * 2**stage
        for _ in range(m):
            total += 9 * c_in * c + 9 * c * c + 4 * c  # two convs, two BNs
            if shortcut == "B" and c_in != c:
                total += c_in * c + 2 * c  # 1x1 projection + BN
            c_in = c
    return total + 4 * w * num_classes + num_classes


@pytest.mark.parametrize("k", [1, 2, 8])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_lenet_matches_closed_form(k, num_classes):
    assert n_params(f"lenet5x{k}", num_classes) == lenet_closed_form(k, num_classes)


def test_lenet5x8_is_the_papers_3_9m_student():
    n = n_params("lenet5x8", 10)
    assert n == 3_882_858
    assert abs(n - 3.9e6) / 3.9e6 < 0.01
    assert n_params("lenet5", 10, width=8) == n


@pytest.mark.parametrize(
    ("name", "m", "published", "exact"),
    [
        ("resnet20", 3, 0.27e6, 269_722),
        ("resnet56", 9, 0.85e6, 853_018),
        ("resnet110", 18, 1.7e6, 1_727_962),
    ],
)
def test_cifar_resnet_counts(name, m, published, exact):
    n = n_params(name, 10)
    assert n == exact == cifar_resnet_closed_form(m, 10)
    assert abs(n - published) / published < 0.02
    assert n_params(name, 100) == cifar_resnet_closed_form(m, 100)


def test_cifar_resnet_option_b_adds_projections():
    n_a = n_params("resnet20", 10)
    n_b = n_params("resnet20", 10, shortcut="B")
    assert n_b == cifar_resnet_closed_form(3, 10, shortcut="B")
    assert n_b - n_a == 10 * 16**2 + 12 * 16


def test_mobilenet_v3_large_matches_reference_implementation():
    # torchvision.models.mobilenet_v3_large(): 5,483,032 parameters; paper/TF-Slim: 5.4 M.
    n = n_params("mobilenet_v3", 1000, (224, 224, 3), stem_stride=2)
    assert n == 5_483_032
    assert abs(n - 5.4e6) / 5.4e6 < 0.02


def test_mobilenet_v3_small_matches_reference_implementation():
    # torchvision.models.mobilenet_v3_small(): 2,542,856 parameters; paper: 2.5 M.
    n = n_params("mobilenet_v3", 1000, variant="small")
    assert n == 2_542_856
    assert abs(n - 2.5e6) / 2.5e6 < 0.02


def test_mobilenet_v3_large_075_close_to_published():
    n = n_params("mobilenet_v3", 1000, width_multiplier=0.75)
    assert abs(n - 4.0e6) / 4.0e6 < 0.03  # published 4.0 M (TF-Slim rounding differs a little)


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    [
        ("mobilenet_v3_35", 200, 1_084_648),
        ("mobilenet_v3_125", 200, 6_883_944),
        ("mobilenet_v3_35", 10, 841_258),
        ("mobilenet_v3_125", 10, 6_579_754),
    ],
)
def test_mobilenet_v3_paper_widths(name, num_classes, expected):
    assert n_params(name, num_classes, (64, 64, 3)) == expected
    # the count does not depend on the input size or the stem stride
    assert n_params(name, num_classes, (32, 32, 3), stem_stride=2) == expected


def test_mobilenet_head_rule():
    """The 1280-wide head is kept for multipliers < 1 and scaled (to 1600) for 1.25."""
    small = abstract_variables(create_model("mobilenet_v3_35", 10), (32, 32, 3))["params"]
    large = abstract_variables(create_model("mobilenet_v3_125", 10), (32, 32, 3))["params"]
    assert small["head"]["kernel"].shape == (336, 1280)  # 6 * make_divisible(160 * 0.35)
    assert large["head"]["kernel"].shape == (1200, 1600)


def test_mlp_and_cnn_closed_form():
    assert n_params("mlp", 10, (40,), hidden_sizes=(32, 16)) == (
        40 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    )
    # 1-D: length 40 -> 20 -> 10 after two SAME-padded pools
    n1 = n_params("cnn", 10, (40,), channels=(4, 8), kernel_size=3, dense_width=16)
    assert n1 == (3 * 1 * 4 + 4) + (3 * 4 * 8 + 8) + (10 * 8 * 16 + 16) + (16 * 10 + 10)
    # 2-D: 28x28x1 -> 14 -> 7
    n2 = n_params("cnn", 10, (28, 28, 1), channels=(4, 8), kernel_size=3, dense_width=None)
    assert n2 == (9 * 4 + 4) + (9 * 4 * 8 + 8) + (7 * 7 * 8 * 10 + 10)
