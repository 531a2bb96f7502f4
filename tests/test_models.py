import pytest
import torch
import torchvision

from genaug.models import MODELS, ManifoldMix, create_model, scale_channels


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


ALL_MODELS = ["preactresnet18", "preactresnet34", "resnet50", "wrn28_10", "wrn28_2"]


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_model():
    assert set(ALL_MODELS) <= set(MODELS.names()) and MODELS.names() == sorted(MODELS.names())
    assert {"wrn28_10", "wrn28_2"} <= set(MODELS.names("wrn*"))
    assert all(name.startswith("wrn") for name in MODELS.names("wrn*"))
    assert {"preactresnet18", "preactresnet34", "resnet50"} <= set(MODELS.names("*resnet*"))


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet18'.*preactresnet18.*wrn28_2"):
        create_model("resnet18", num_classes=10)


@pytest.mark.parametrize(
    "name, num_classes, expected",
    [
        ("preactresnet18", 100, 11_217_316),  # docs/methods/training-recipes.md
        ("preactresnet34", 100, 21_325_476),
        ("wrn28_10", 100, 36_536_884),  # 36,479,194 at 10 classes, as Zagoruyko & Komodakis report
        ("wrn28_2", 100, 1_479_220),
        ("resnet50", 1000, 25_557_032),  # torchvision's resnet50
    ],
)
def test_parameter_counts(name, num_classes, expected):
    assert n_parameters(create_model(name, num_classes=num_classes)) == expected


def test_resnet50_is_torchvisions_architecture():
    ours = create_model("resnet50", num_classes=7).state_dict()
    theirs = torchvision.models.resnet50(weights=None, num_classes=7).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("size", [32, 16])
def test_output_shapes(name, size):
    model = create_model(name, num_classes=5, width=0.125).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_width_scales_the_parameters_down(name):
    assert n_parameters(create_model(name, 10, width=0.25)) < n_parameters(create_model(name, 10, width=0.5)) / 2


def test_width_scales_every_stage_of_preactresnet():
    model = create_model("preactresnet18", num_classes=10, width=0.25)
    assert model.stem.out_channels == 16
    assert [stage[-1].conv2.out_channels for stage in model.stages] == [16, 32, 64, 128]
    assert model.fc.in_features == 128


def test_scale_channels():
    assert scale_channels(64, 1.0) == 64
    assert scale_channels(64, 0.125) == 8
    assert scale_channels(64, 0.01) == 8  # never below 8
    assert scale_channels(160, 0.3) == 48
    with pytest.raises(ValueError, match="width"):
        scale_channels(64, 0.0)


@pytest.mark.parametrize("name", ["preactresnet18", "wrn28_2", "resnet50"])
def test_in_channels(name):
    model = create_model(name, num_classes=3, width=0.125, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 3)


def test_wide_resnet_dropout_is_active_only_in_training():
    model = create_model("wrn28_2", num_classes=3, width=0.25, dropout=0.5)
    x = torch.randn(2, 3, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_manifold_mix_at_layer_0_equals_mixing_the_inputs(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, width=0.125).eval()
    x = torch.randn(4, 3, 16, 16)
    perm = torch.tensor([2, 0, 3, 1])
    lam = 0.3
    with torch.no_grad():
        mixed_inside = model(x, mix=ManifoldMix(0, lam, perm))
        mixed_outside = model(lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(mixed_inside, mixed_outside)


def test_manifold_mix_at_a_hidden_layer_mixes_that_layer_only():
    torch.manual_seed(0)
    model = create_model("preactresnet18", num_classes=4, width=0.125).eval()
    x = torch.randn(4, 3, 16, 16)
    perm = torch.tensor([1, 0, 3, 2])
    with torch.no_grad():
        plain = model(x)
        assert torch.equal(model(x, mix=ManifoldMix(1, 1.0, perm)), plain)  # lam = 1: no mixing
        hidden = model.stages[0](model.stem(x))
        expected = 0.6 * hidden + 0.4 * hidden[perm]
        for stage in model.stages[1:]:
            expected = stage(expected)
        expected = model.fc(expected.mean((2, 3)))
        torch.testing.assert_close(model(x, mix=ManifoldMix(1, 0.6, perm)), expected)


def test_manifold_mix_formula():
    h = torch.arange(6.0).reshape(3, 2)
    mix = ManifoldMix(layer=2, lam=0.25, perm=torch.tensor([2, 0, 1]))
    torch.testing.assert_close(mix(h), 0.25 * h + 0.75 * h[[2, 0, 1]])
    assert torch.equal(mix.at(1, h), h)


def test_torchvision_is_imported_only_for_resnet50():
    """A pocket or CIFAR training worker never imports torchvision (about 2 s a process)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from genaug.models import create_model\n"
        "import genaug.training.trainer\n"
        "create_model('preactresnet18', num_classes=10, width=0.25)\n"
        "before = 'torchvision' in sys.modules\n"
        "create_model('resnet50', num_classes=10, width=0.125)\n"
        "print(before, 'torchvision' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
