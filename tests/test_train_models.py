"""Backbones: real ImageNet weights load exactly and recognise real photos; TSN temporal stem init."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")

from train.models import (  # noqa: E402
    ARCHS,
    MODELS,
    ModelSpec,
    build_model,
    default_weights,
    imagenet_weights_path,
    load_state_dict_file,
)


@pytest.fixture(scope="module")
def imagenet_model():
    return build_model("efficientnet_lite0", 1000, weights="imagenet").eval()


def _tflite_input(image_rgb: np.ndarray, size: int = 224) -> torch.Tensor:
    x = cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = (x - 127.0) / 128.0  # EfficientNet-Lite's TF-Lite input scaling
    return torch.from_numpy(x.transpose(2, 0, 1)[None].copy())


def test_weights_file_matches_architecture_exactly(imagenet_model):
    state = load_state_dict_file(imagenet_weights_path())
    own = imagenet_model.state_dict()
    assert set(state) == set(own), (set(state) ^ set(own))
    assert all(tuple(state[k].shape) == tuple(own[k].shape) for k in state)
    assert len(state) == 296
    # the loaded values are the file's, not a random init
    assert torch.equal(own["_blocks.7._depthwise_conv.weight"], state["_blocks.7._depthwise_conv.weight"])


@pytest.mark.parametrize("photo, accepted", [
    ("chelsea", {281, 282, 283, 284, 285}),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    ("coffee", {967, 968, 504}),  # espresso, cup, coffee mug
])
def test_imagenet_weights_recognise_real_photos(imagenet_model, photo, accepted):
    image = getattr(skimage_data, photo)()
    with torch.no_grad():
        probs = imagenet_model(_tflite_input(image)).softmax(1)[0]
    top = int(probs.argmax())
    assert top in accepted, f"{photo}: top-1 class {top} (p={float(probs[top]):.2f})"
    assert float(probs[sorted(accepted)].sum()) > 0.5


def test_temporal_stem_cross_modality_init_matches_tsn_prediction():
    L = 10
    rgb = build_model("efficientnet_lite0", 4, in_channels=3, weights="imagenet").eval()
    flow = build_model("efficientnet_lite0", 4, in_channels=2 * L, weights="imagenet").eval()
    w_rgb, w_flow = rgb._conv_stem.weight.detach(), flow._conv_stem.weight.detach()
    assert w_flow.shape == (32, 2 * L, 3, 3)
    # every one of the 2L channels carries the RGB filters averaged over R, G, B
    assert torch.allclose(w_flow, w_rgb.mean(1, keepdim=True).expand_as(w_flow))
    # TSN's scheme predicts: a stack whose 2L channels all equal an image c gives 2L/3 times the
    # response of an RGB input whose 3 channels all equal c (no rescaling in the paper's init)
    gray = cv2.resize(cv2.cvtColor(skimage_data.chelsea(), cv2.COLOR_RGB2GRAY), (64, 64)).astype(np.float32)
    c = torch.from_numpy((gray - 127.0) / 128.0)[None, None]
    with torch.no_grad():
        r_rgb = rgb._conv_stem(c.expand(1, 3, 64, 64))
        r_flow = flow._conv_stem(c.expand(1, 2 * L, 64, 64))
    assert torch.allclose(r_flow, r_rgb * (2 * L / 3), rtol=1e-4, atol=1e-4)
    # the rest of the network is the ImageNet one
    assert torch.equal(rgb._blocks[3]._project_conv.weight, flow._blocks[3]._project_conv.weight)


def test_scratch_init_keeps_random_stem():
    flow = build_model("efficientnet_lite0", 4, in_channels=20, weights="imagenet", init="scratch")
    w = flow._conv_stem.weight.detach()
    assert not torch.allclose(w, w[:, :1].expand_as(w))  # channels differ: not replicated RGB means


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_archs_and_user_weight_file(arch, tmp_path):
    torch.manual_seed(0)
    donor = build_model(arch, 7, in_channels=3)
    path = tmp_path / "w.pt"
    torch.save(donor.state_dict(), path)
    model = build_model(arch, 5, in_channels=6, weights=path).eval()  # new head, 2L=6 channel stem
    out = model(torch.zeros(2, 6, 64, 64))
    assert out.shape == (2, 5)
    first = dict(model.named_parameters())
    donor_first = dict(donor.named_parameters())
    name = next(n for n, p in first.items() if p.ndim == 4)
    assert torch.allclose(first[name], donor_first[name].mean(1, keepdim=True).expand_as(first[name]))


def test_unknown_arch_and_bad_weights_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vgg99", 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("resnet18", 3, weights=tmp_path / "missing.pt")


# --- the model table ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_table_names_the_real_first_conv_and_classifier_of_each_network(arch):
    spec = MODELS[arch]
    net = spec.build(5, 6, 0.0)
    first, head = net.get_submodule(spec.first_conv), net.get_submodule(spec.classifier)
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == 6
    assert isinstance(head, torch.nn.Linear) and head.out_features == 5
    # the first conv is the first weight the input meets, the classifier the last
    weights = [name for name, p in net.named_parameters() if name.endswith("weight") and p.ndim >= 2]
    assert weights[0] == spec.first_conv + ".weight" and weights[-1] == spec.classifier + ".weight"


def test_a_new_table_row_gets_the_stream_logic_of_build_model(monkeypatch, tmp_path):
    """Adding a backbone is one row: cross-modality stem init and a fresh head come from the table's names."""
    def tiny(num_classes, in_channels, dropout):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten(), torch.nn.Dropout(dropout), torch.nn.Linear(4, num_classes))

    monkeypatch.setitem(MODELS, "tiny", ModelSpec("tiny", tiny, first_conv="0", classifier="4"))
    torch.manual_seed(0)
    donor = build_model("tiny", 7)
    torch.save(donor.state_dict(), tmp_path / "donor.pt")
    net = build_model("tiny", 3, in_channels=10, weights=tmp_path / "donor.pt")
    assert torch.allclose(net[0].weight, donor[0].weight.mean(1, keepdim=True).expand(-1, 10, -1, -1))
    assert torch.equal(net[0].bias, donor[0].bias)
    assert net[4].weight.shape == (3, 4)  # head replaced for 3 classes
    with pytest.raises(ValueError, match="ImageNet weights are only bundled for efficientnet_lite0; .* for tiny"):
        build_model("tiny", 3, weights="imagenet")
    assert default_weights("tiny") is None and default_weights("efficientnet_lite0") == "imagenet"


def test_train_arch_choices_come_from_the_table_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from stream.cli import build_parser; p = build_parser(); "
            "sub = next(a for a in p._actions if a.dest == 'command').choices['train']; "
            "arch = next(a for a in sub._actions if a.dest == 'arch'); "
            "print(','.join(arch.choices), arch.default, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [",".join(ARCHS), ARCHS[0], "False"]
    assert ARCHS == ("efficientnet_lite0", "resnet18", "mobilenet_v3_small")
