"""The network: layer counts, shapes, ECA, DropBlock, configuration and input transform."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from gpm_astro.exceptions import ParameterError
from gpm_astro_plugins.gpm_resnet.model import (
    ECA, Bottleneck, DropBlock2d, GPMResNet, GPMResNetConfig, InputTransform, build_model,
    count_parameters, get_config)
from gpm_astro_plugins.gpm_resnet.training import augment_batch

# ResNet-50 without its 1000-class layer has 23,508,032 parameters; ECA adds 3 per bottleneck
# (16 x 3 = 48); the PG head adds 2048*128 + 128 + 128*1 + 1 = 262,401.
PAPER_PARAMETERS = 23_508_032 + 48 + 262_401


def test_paper_layer_counts_and_parameters():
    model = build_model("paper")
    stages = [len(stage) for stage in model.dho]
    assert stages == [3, 4, 6, 3]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 16 * 3 + 4  # stem, three per bottleneck, four projections
    assert sum(isinstance(m, ECA) for m in model.modules()) == 16
    # DropBlock only in stages 3 and 4 (6 + 3 bottlenecks) by default
    assert len(model.dropblocks()) == 9
    assert all(b.dropblock is None for stage in model.dho[:2] for b in stage)
    assert model.pg[3].in_features == 2048 and model.pg[3].out_features == 128
    assert model.pg[5].out_features == 1
    assert count_parameters(model) == PAPER_PARAMETERS


def test_paper_forward_shape():
    model = build_model("paper").eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 152, 152))
    assert out.shape == (2, 1)
    # the 152 px input reaches the head as a 5 x 5 map (METHOD.md section 5)
    with torch.inference_mode():
        features = model.dho(model.ilo(torch.randn(1, 3, 152, 152)))
    assert features.shape == (1, 2048, 5, 5)


def test_lite_is_small_and_maps_to_a_value_and_its_log_variance():
    model = build_model("lite").eval()
    assert count_parameters(model) < 1_000_000
    with torch.inference_mode():
        assert model(torch.randn(3, 3, 48, 48)).shape == (3, 2)
        assert model.features(torch.randn(3, 3, 48, 48)).shape == (3, 128)
    # the paper's network keeps its single output
    assert build_model("paper").pg[-1].out_features == 1


def test_he_fan_out_init_and_batchnorm_init():
    torch.manual_seed(0)
    model = build_model("paper")
    conv = model.dho[2][0].conv2  # 3x3, 256 -> 256
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx(np.sqrt(2 / fan_out), rel=0.05)
    bn = model.dho[0][0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_eca_matches_its_definition():
    torch.manual_seed(0)
    eca = ECA(3)
    x = torch.randn(2, 8, 5, 5)
    pooled = x.mean(dim=(2, 3))
    w = eca.conv.weight.view(3)
    padded = torch.nn.functional.pad(pooled, (1, 1))
    attention = torch.sigmoid(w[0] * padded[:, :-2] + w[1] * padded[:, 1:-1]
                              + w[2] * padded[:, 2:])
    expected = x * attention[:, :, None, None]
    assert torch.allclose(eca(x), expected, atol=1e-6)
    # the attention is learned: the loss reaches the 1-D convolution
    eca(x).sum().backward()
    assert eca.conv.weight.grad.abs().sum() > 0


def test_eca_sits_before_the_residual_add():
    torch.manual_seed(0)
    block = Bottleneck(16, 4).eval()
    x = torch.randn(1, 16, 6, 6)
    seen = {}
    block.bn3.register_forward_hook(lambda m, i, o: seen.update(bn3=o.clone()))
    block.eca.register_forward_hook(lambda m, i, o: seen.update(eca_in=i[0].clone()))
    with torch.no_grad():
        block(x)
        assert torch.equal(seen["eca_in"], seen["bn3"])  # ECA after the last 1x1 conv + BN
        block.eca.forward = torch.zeros_like  # an attention of 0 leaves only the shortcut
        assert torch.equal(block(x), torch.relu(x))


@pytest.mark.parametrize("drop_prob", [0.1, 0.3])
def test_dropblock_drops_contiguous_blocks_at_the_rate(drop_prob):
    torch.manual_seed(1)
    block = DropBlock2d(drop_prob, block_size=5).train()
    out = block(torch.ones(400, 3, 32, 32))
    dropped = out == 0
    assert dropped.float().mean().item() == pytest.approx(drop_prob, rel=0.25)
    # one mask for all channels of a sample
    assert torch.equal(dropped[:, 0], dropped[:, 1])
    # kept units are rescaled so the mean activation stays 1
    assert out.mean().item() == pytest.approx(1.0, rel=0.02)
    # every dropped region is made of whole 5 x 5 squares
    for sample in dropped[:50, 0].numpy():
        labels, count = ndimage.label(sample)
        for region in ndimage.find_objects(labels):
            assert region[0].stop - region[0].start >= 5
            assert region[1].stop - region[1].start >= 5
        eroded = ndimage.binary_erosion(sample, np.ones((5, 5)), border_value=1)
        assert np.array_equal(ndimage.binary_dilation(eroded, np.ones((5, 5))) & sample,
                              sample)


def test_dropblock_rescales_each_sample_on_its_own():
    # a galaxy's output must not depend on which galaxies share its batch
    torch.manual_seed(2)
    block = DropBlock2d(0.3, block_size=3).train()
    out = block(torch.ones(64, 2, 16, 16))
    per_sample_mean = out.mean(dim=(1, 2, 3))
    assert torch.allclose(per_sample_mean, torch.ones(64), atol=1e-5)


def test_dropblock_blocks_are_clipped_to_half_a_small_map():
    torch.manual_seed(3)
    block = DropBlock2d(0.5, block_size=7).train()
    out = block(torch.ones(200, 1, 5, 5))
    assert (out.flatten(1) != 0).any(dim=1).all()


def test_dropblock_is_identity_in_eval_and_active_for_mc():
    block = DropBlock2d(0.3, block_size=3)
    x = torch.ones(4, 2, 8, 8)
    block.eval()
    assert torch.equal(block(x), x)
    block.mc_active = True
    torch.manual_seed(0)
    assert (block(torch.ones(50, 2, 8, 8)) == 0).any()


def test_dropblock_ramp():
    model = build_model(GPMResNetConfig(width=0.125, blocks=(1, 1, 1, 1), drop_prob=0.2))
    model.set_drop_progress(0.5)
    assert all(b.drop_prob_now == pytest.approx(0.1) for b in model.dropblocks())
    model.set_drop_progress(0.0)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert torch.equal(a, b)  # no drop at the start of the ramp (BN in train mode is fixed)


def test_configs_and_validation():
    assert get_config("paper").blocks == (3, 4, 6, 3)
    lite = get_config("lite")
    assert lite.input_size is None and lite.crop_size == 48 and lite.input_scaling == "asinh"
    assert lite.error_head and lite.lr_schedule == "onecycle" and lite.optimizer == "adamw"
    assert lite.replace(cutout_size=24).network_input_size == 24  # smaller cutouts: no crop
    assert GPMResNetConfig.from_dict(lite.to_dict()) == lite
    recipe = get_config("paper_recipe")
    assert recipe.blocks == (3, 4, 6, 3) and recipe.width == 1 and recipe.error_head
    # a card written before these fields existed loads as the paper's training
    old = {k: v for k, v in get_config("paper").to_dict().items()
           if k not in ("crop_size", "optimizer", "lr_schedule", "lr_warmup", "error_head",
                        "test_time_augmentation")}
    assert GPMResNetConfig.from_dict(old) == get_config("paper")
    with pytest.raises(ParameterError, match="lr_schedule"):
        GPMResNetConfig(lr_schedule="cyclic")
    with pytest.raises(ParameterError, match="'gaussian'"):
        GPMResNetConfig(input_scaling="gaussian")
    with pytest.raises(ParameterError, match="'tiny'"):
        get_config("tiny")
    with pytest.raises(ParameterError, match="blocks"):
        GPMResNetConfig(blocks=(1, 1, 1))
    with pytest.raises(ParameterError, match="drop_prob"):
        GPMResNetConfig(drop_prob=1.5)
    with pytest.raises(ParameterError, match="unknown"):
        GPMResNetConfig.from_dict({"depth": 3})


def test_input_transform_bands_resize_scaling():
    config = GPMResNetConfig(bands="rz", input_size=16, input_scaling="asinh",
                             asinh_softening=0.5)
    images = np.zeros((2, 3, 32, 32), np.float32)
    images[:, 0] = 100.0  # g must be dropped
    images[:, 1] = 1.0
    images[:, 2] = 2.0
    x = InputTransform(config, "grz")(images)
    assert x.shape == (2, 2, 16, 16)
    assert torch.allclose(x[:, 0], torch.asinh(torch.tensor(2.0)))
    assert torch.allclose(x[:, 1], torch.asinh(torch.tensor(4.0)))
    raw = InputTransform(GPMResNetConfig(), "grz")(images)
    assert np.array_equal(raw.numpy(), images)  # the paper's raw-flux input
    with pytest.raises(ParameterError, match="'i'"):
        InputTransform(GPMResNetConfig(bands="gi"), "grz")


def test_augmentation_is_a_flip_or_rotation_of_each_image():
    x = torch.randn(40, 2, 6, 6)
    out = augment_batch(x, torch.Generator().manual_seed(0))
    seen = set()
    for original, augmented in zip(x, out):
        candidates = [torch.rot90(original.flip(-1) if f else original, k, dims=(-2, -1))
                      for f in (0, 1) for k in range(4)]
        matches = [i for i, c in enumerate(candidates) if torch.equal(c, augmented)]
        assert matches
        seen.add(matches[0])
    assert len(seen) >= 6  # the draws cover the dihedral group


def test_model_in_channels_follow_bands():
    model = GPMResNet(GPMResNetConfig(bands="r", width=0.125, blocks=(1, 1, 1, 1)))
    assert model.ilo[0].in_channels == 1


def _with_batchnorm_statistics(model, seed=0):
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=generator))
    return model.eval()


def test_fold_batchnorm_keeps_the_function_and_the_original(tiny_config):
    from gpm_astro_plugins.gpm_resnet.model import fold_batchnorm

    torch.manual_seed(0)
    model = _with_batchnorm_statistics(GPMResNet(tiny_config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_mixed_precision_copy_dtypes_and_agreement(tiny_config):
    from gpm_astro_plugins.gpm_resnet.model import mixed_precision_copy

    torch.manual_seed(0)
    config = tiny_config.replace(blocks=(2, 1, 1, 1))
    model = _with_batchnorm_statistics(GPMResNet(config))
    mixed = mixed_precision_copy(model)
    blocks = [m for m in mixed.modules() if isinstance(m, Bottleneck)]
    assert mixed.ilo[0].weight.dtype == torch.float32
    # the first bottleneck reads the fp32 ILO output with fp32 convolutions only
    assert blocks[0].conv1.weight.dtype == torch.float32
    assert blocks[0].downsample[0].weight.dtype == torch.float32
    assert blocks[0].conv2[1].weight.dtype == torch.bfloat16
    assert blocks[0].conv3.weight.dtype == torch.bfloat16
    assert all(b.conv1.weight.dtype == torch.bfloat16 for b in blocks[1:])
    assert mixed.pg[-1].weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    whole_first = mixed_precision_copy(model, fp32_blocks=1)
    first = [m for m in whole_first.modules() if isinstance(m, Bottleneck)]
    assert first[0].conv3.weight.dtype == torch.float32
    assert first[1].conv1.weight.dtype == torch.float32
    assert first[1].conv3.weight.dtype == torch.bfloat16
    x = torch.rand(8, 3, 24, 24) * 3
    with torch.no_grad():
        reference = model(x)
        outputs = [net(x.contiguous(memory_format=torch.channels_last))
                   for net in (mixed, whole_first,
                               mixed_precision_copy(model, fp32_entry=False))]
    scale = reference.std().item()
    for out in outputs:
        assert out.dtype == torch.float32 and out.shape == (8, 1)
        # bf16 keeps 8 bits: close to fp32, but not equal to it
        assert 0 < (out - reference).abs().max().item() < 0.1 * scale
    # DropBlock is still reachable for Monte-Carlo passes
    mixed.set_mc_dropout(True)
    assert all(b.mc_active for b in mixed.dropblocks())
    with pytest.raises(ParameterError, match="fp32_blocks"):
        mixed_precision_copy(model, fp32_blocks=99)
