"""Networks built from plans: shapes, encoder weight transfer, fusion, MAE/VAE structure, records."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import (
    PRETRAINING_METHODS,
    ClassificationNet,
    EmbeddingNet,
    EncoderMismatchError,
    MAENet,
    MaskToken,
    RegressionNet,
    SegmentationNet,
    SequenceFusion,
    VAEHybridNet,
    adaptation_record,
    build_encoder,
    build_finetuning_network,
    build_from_record,
    build_pretraining_network,
    count_parameters,
    encoder_state_dict,
    expand_stem_weights,
    load_encoder_weights,
    reparameterize,
    stem_weight_keys,
)
from fomo_nn.plans.records import NetworkPlan, NormalizationPlan, Plans

PATCH = (32, 32, 32)
TINY = dict(features_per_stage=[8, 16, 32], kernel_sizes=[[3, 3, 3]] * 3, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            n_conv_per_stage=[2, 2, 2], n_conv_per_stage_decoder=[1, 1])
SMALL_METHOD = {"projection_hidden": 32, "projection_dim": 16, "prototypes": 24, "subject_channels": 8}


def tiny_net(encoder="plain_conv", **changes) -> NetworkPlan:
    return NetworkPlan(encoder=encoder, **{**TINY, **changes})


def make_plans(task_type="pretraining", channels=("mri",), network=None, **fields) -> Plans:
    defaults = {"labels": {"background": 0, "tumor": 1} if task_type == "segmentation" else None,
                "classes": {"0": "no", "1": "yes"} if task_type == "classification" else None}
    return Plans(dataset_name="Dataset999_Test", task_type=task_type, channel_names=list(channels),
                 target_spacing=[1.0, 1.0, 1.0], spacing_reason="test", median_shape=list(PATCH),
                 patch_size=list(PATCH), batch_size=2, normalization=[NormalizationPlan() for _ in channels],
                 network=network or tiny_net(), **{**defaults, **fields})


def pretrained(method: str, encoder="plain_conv", seed=0):
    torch.manual_seed(seed)
    return build_pretraining_network(make_plans(network=tiny_net(encoder)), method, **SMALL_METHOD)


def finetuning(task: str, fusion: str, channels=3, encoder="plain_conv", seed=1):
    torch.manual_seed(seed)
    net = tiny_net(encoder, fusion=fusion, input_channels=channels if fusion == "none" else 1)
    return build_finetuning_network(make_plans(task, [f"seq{i}" for i in range(channels)], net))


def volume(channels=1, batch=2, seed=0):
    return torch.randn(batch, channels, *PATCH, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("encoder", ["plain_conv", "residual"])
def test_finetuning_output_shapes(encoder):
    x = volume(channels=2)
    for fusion in ("none", "stem_expansion", "shared_encoder"):
        assert finetuning("segmentation", fusion, 2, encoder)(x).shape == (2, 2, *PATCH)
        assert finetuning("classification", fusion, 2, encoder)(x).shape == (2, 2)
        assert finetuning("regression", fusion, 2, encoder)(x).shape == (2, 1)


def test_pretraining_output_shapes():
    x = volume()
    assert pretrained("mae")(x).shape == (2, 1, *PATCH)
    hybrid = pretrained("hybrid")(x)
    assert hybrid["reconstruction"].shape == (2, 1, *PATCH)
    assert hybrid["embedding"].shape == (2, 32) and hybrid["projection"].shape == (2, 16)
    assert pretrained("contrastive")(x).shape == (2, 16)
    dino_global, dino_tokens = pretrained("dino")(x, tokens=True)
    assert dino_global.shape == (2, 24) and dino_tokens.shape == (2, 8 * 8 * 8, 24)
    assert dino_global.abs().max() <= 1.0 + 1e-5  # cosine logits against normalized prototypes
    vae = pretrained("vae")(x)
    assert vae["reconstruction"].shape == (2, 1, *PATCH) and vae["subject_mu"].shape == (2, 8, 8, 8, 8)


def test_odd_input_size_reconstructs_at_input_size():
    x = torch.randn(1, 1, 30, 33, 32)
    assert pretrained("mae")(x).shape == x.shape


def test_deep_supervision_and_all_stage_pooling():
    net = tiny_net()
    seg = SegmentationNet(net, 1, 3, deep_supervision=True)
    outputs = seg(volume())
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 32, 32, 32), (2, 3, 16, 16, 16)]
    seg.deep_supervision = False
    assert seg(volume()).shape == (2, 3, *PATCH)
    cls = ClassificationNet(net, 1, 4, pool="all_stages", dropout=0.3)
    assert cls.head.linear.in_features == 8 + 16 + 32 and cls(volume()).shape == (2, 4)


def test_pool_has_one_default():
    from fomo_nn.networks.finetuning import DEFAULT_POOL

    assert DEFAULT_POOL == "all_stages"
    assert ClassificationNet(tiny_net(), 1, 2).pool == DEFAULT_POOL  # the constructor's default is that one
    assert ClassificationNet(tiny_net(), 1, 2, pool="bottleneck").head.linear.in_features == 32


def test_init_is_deterministic_given_seed():
    a, b, c = (pretrained("mae", seed=s) for s in (5, 5, 6))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.state_dict()[stem_weight_keys(a)[0]], c.state_dict()[stem_weight_keys(c)[0]])


def test_decoder_does_not_duplicate_encoder_weights():
    keys = SegmentationNet(tiny_net(), 1, 2).state_dict()
    assert not [k for k in keys if "decoder.encoder" in k]


# ---------------------------------------------------------------- weight transfer

@pytest.mark.parametrize("encoder", ["plain_conv", "residual"])
def test_every_pretraining_encoder_loads_into_every_finetuning_model(encoder):
    for method in PRETRAINING_METHODS:
        source = pretrained(method, encoder)
        weights = encoder_state_dict(source)
        assert weights and all(k.startswith("encoder.") for k in weights)
        for task in ("segmentation", "classification", "regression"):
            for fusion in ("stem_expansion", "shared_encoder"):
                model = finetuning(task, fusion, 3, encoder)
                report = load_encoder_weights(model, source.state_dict())
                assert report["missing"] == [] and report["unexpected"] == [] and report["shape_mismatch"] == []
                assert len(report["loaded"]) == len(weights)
                assert report["stem_expanded"] == (stem_weight_keys(model) if fusion == "stem_expansion" else [])
                target = model.state_dict()
                for key, value in weights.items():
                    if key not in report["stem_expanded"]:
                        assert torch.equal(target[key], value), key


def test_expand_stem_weights_keeps_response_to_identical_channels():
    torch.manual_seed(0)
    weight = torch.randn(8, 1, 3, 3, 3)
    bias = torch.randn(8)
    expanded = expand_stem_weights({"stem.weight": weight, "stem.bias": bias}, "stem.weight", 3)
    assert expanded["stem.weight"].shape == (8, 3, 3, 3, 3) and torch.equal(expanded["stem.bias"], bias)
    x = volume(seed=3)
    single = F.conv3d(x, weight, bias, padding=1)
    copied = F.conv3d(x.repeat(1, 3, 1, 1, 1), expanded["stem.weight"], bias, padding=1)
    torch.testing.assert_close(copied, single, rtol=1e-5, atol=1e-5)
    different = F.conv3d(torch.cat([x, -x, x], 1), expanded["stem.weight"], bias, padding=1)
    assert not torch.allclose(different, single, atol=1e-3)
    with pytest.raises(ValueError, match="1 input channel"):
        expand_stem_weights(expanded, "stem.weight", 2)


@pytest.mark.parametrize("encoder", ["plain_conv", "residual"])
def test_stem_expanded_model_reproduces_pretrained_features(encoder):
    source = pretrained("mae", encoder).eval()
    target = finetuning("segmentation", "stem_expansion", 3, encoder).eval()
    load_encoder_weights(target, source.state_dict())
    x = volume(seed=4)
    with torch.no_grad():
        first_source = source.encoder(x)
        first_target = target.encoder(x.repeat(1, 3, 1, 1, 1))
    for a, b in zip(first_source, first_target):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_shared_encoder_on_identical_sequences_matches_single_channel_encoder():
    source = pretrained("mae").eval()
    fused = finetuning("segmentation", "shared_encoder", 3).eval()
    apart = finetuning("regression", "shared_encoder", 3).eval()  # pooled heads: sequences side by side
    for target in (fused, apart):
        load_encoder_weights(target, source.state_dict())
    x = volume(seed=5)
    with torch.no_grad():
        for a, b in zip(source.encoder(x), fused.stage_features(x.repeat(1, 3, 1, 1, 1))):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        single = torch.cat([f.mean(dim=(2, 3, 4)) for f in source.encoder(x)], dim=1)
        torch.testing.assert_close(apart.pooled_features(x.repeat(1, 3, 1, 1, 1)), single.repeat(1, 3),
                                   rtol=1e-5, atol=1e-5)


def test_concat_fusion_keeps_each_sequence_in_its_own_block():
    model = finetuning("classification", "shared_encoder", 3).eval()
    x = volume(channels=3, batch=1, seed=6)
    with torch.no_grad():
        pooled = model.pooled_features(x)
        swapped = model.pooled_features(x[:, [2, 0, 1]])
    width = pooled.shape[1] // 3
    assert pooled.shape == (1, 3 * sum(model.stage_channels))
    blocks = pooled.view(1, 3, width)
    torch.testing.assert_close(swapped.view(1, 3, width), blocks[:, [2, 0, 1]])
    with pytest.raises(ValueError, match="concat"):
        model.stage_features(x)
    with pytest.raises(ValueError, match="pooled heads"):
        SegmentationNet(tiny_net(), 3, 2, fusion="shared_encoder", fusion_weighting="concat")


def test_mismatched_encoder_fails_loudly_naming_keys_and_shapes():
    source = MAENet(tiny_net(features_per_stage=[8, 16, 64]))
    target = finetuning("segmentation", "stem_expansion", 2)
    before = encoder_state_dict(target)
    with pytest.raises(EncoderMismatchError) as error:
        load_encoder_weights(target, source.state_dict())
    message = str(error.value)
    assert "encoder.stages.2.0.convs.0.conv.weight" in message
    assert "(64, 16, 3, 3, 3)" in message and "(32, 16, 3, 3, 3)" in message and "allow_partial" in message
    for key, value in encoder_state_dict(target).items():  # nothing was half-loaded
        assert torch.equal(value, before[key])


def test_partial_loading_loads_matching_weights_and_reports_the_rest():
    source = MAENet(tiny_net(features_per_stage=[8, 16, 64]))
    target = finetuning("classification", "none", 1)
    before = encoder_state_dict(target)
    weights = source.state_dict()
    weights["encoder.extra.weight"] = torch.zeros(3)
    report = load_encoder_weights(target, weights, allow_partial=True)
    after = encoder_state_dict(target)
    assert report["unexpected"] == ["encoder.extra.weight"] and report["missing"] == []
    mismatched = {m["key"] for m in report["shape_mismatch"]}
    assert mismatched and all(".stages.2." in k for k in mismatched)
    assert set(report["loaded"]) | mismatched == set(after)
    for key in report["loaded"]:
        assert torch.equal(after[key], weights[key])
    for key in mismatched:
        assert torch.equal(after[key], before[key])


def test_loading_errors_without_any_encoder_key_and_strips_wrapper_prefixes():
    target = finetuning("regression", "none", 1)
    with pytest.raises(EncoderMismatchError, match="no 'encoder.\\*' weights"):
        load_encoder_weights(target, {"weight": torch.zeros(1)}, allow_partial=True)
    wrapped = {f"module.{k}": v for k, v in pretrained("contrastive").state_dict().items()}
    report = load_encoder_weights(target, wrapped)
    assert report["missing"] == [] and report["loaded"]


def test_vae_and_mae_encoders_are_interchangeable():
    vae, mae = pretrained("vae"), pretrained("mae", seed=3)
    report = load_encoder_weights(mae, vae.state_dict())
    assert report["missing"] == [] and report["unexpected"] == []
    for key, value in encoder_state_dict(vae).items():
        assert torch.equal(mae.state_dict()[key], value)


# ---------------------------------------------------------------- fusion

def test_shared_encoder_differs_in_parameters_not_in_output_shapes():
    x = volume(channels=3)
    pooled = 8 + 16 + 32  # pooled features of the three stages of one encoder pass
    # the stem sees 3 channels instead of 1; segmentation fuses every stage with a 1x1x1 convolution of the
    # 3 sequences' features (3F -> F, with bias), the pooled head keeps 3 sequences apart: its Linear layer
    # (2 classes) is 3 times wider
    mixers = sum(3 * f * f + f for f in (8, 16, 32))
    extra_shared = {"segmentation": mixers, "classification": 2 * pooled * 2}
    for task in ("segmentation", "classification"):
        expanded, shared = finetuning(task, "stem_expansion"), finetuning(task, "shared_encoder")
        assert count_parameters(expanded) - count_parameters(shared) == 2 * 8 * 27 - extra_shared[task]
        assert expanded(x).shape == shared(x).shape


def test_conv_fusion_starts_as_the_mean_and_mixes_sequences():
    features = [torch.randn(6, 4, 2, 2, 2)]
    fusion = SequenceFusion(3, 1, "conv", [4])
    torch.testing.assert_close(fusion(features)[0], features[0].view(2, 3, 4, 2, 2, 2).mean(1))
    with torch.no_grad():
        fusion.mixers[0].weight.zero_()
        fusion.mixers[0].weight[0, 2 * 4 + 1] = 1.0  # output channel 0 reads channel 1 of sequence 2
    torch.testing.assert_close(fusion(features)[0][:, 0], features[0].view(2, 3, 4, 2, 2, 2)[:, 2, 1])
    with pytest.raises(ValueError, match="channel count"):
        SequenceFusion(3, 2, "conv")


def test_sequence_fusion_weights():
    features = [torch.arange(2 * 3 * 4, dtype=torch.float32).view(6, 4, 1, 1, 1)]
    fused = SequenceFusion(3, 1)(features)[0]
    torch.testing.assert_close(fused, features[0].view(2, 3, 4, 1, 1, 1).mean(1))  # uniform at init
    fusion = SequenceFusion(3, 1)
    with torch.no_grad():
        fusion.logits[0] = torch.tensor([0.0, 0.0, 50.0])
    torch.testing.assert_close(fusion(features)[0], features[0].view(2, 3, 4, 1, 1, 1)[:, 2])
    assert SequenceFusion(3, 2, "mean").logits is None


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects input \(B, 3"):
        finetuning("regression", "shared_encoder", 3)(volume(channels=2))


# ---------------------------------------------------------------- MAE / VAE structure

def test_mae_decoder_ignores_skips_unlike_the_unet():
    x = volume(seed=6)

    def zero_skips(model):
        original = model.encoder.forward

        def forward(inputs):
            features = original(inputs)
            return [torch.zeros_like(f) for f in features[:-1]] + [features[-1]]
        model.encoder.forward = forward

    mae, seg = pretrained("mae").eval(), SegmentationNet(tiny_net(), 1, 2).eval()
    with torch.no_grad():
        mae_before, seg_before = mae(x), seg(x)
        zero_skips(mae), zero_skips(seg)
        torch.testing.assert_close(mae(x), mae_before)
        assert not torch.allclose(seg(x), seg_before, atol=1e-4)
    # structurally: every decoder block takes only its upsampler's output (no concatenated skip)
    assert mae.decoder.upsamplers[0].in_channels == 32
    for upsample, block in zip(mae.decoder.upsamplers, mae.decoder.blocks):
        assert block.conv.in_channels == upsample.out_channels


def test_mask_tokens_replace_masked_voxels():
    x = volume(channels=2)
    mask = torch.zeros(2, 1, *PATCH, dtype=torch.bool)
    mask[:, :, :8] = True
    zeroed = MaskToken(2, "zero")(x, mask)
    assert torch.all(zeroed[:, :, :8] == 0) and torch.equal(zeroed[:, :, 8:], x[:, :, 8:])
    learned = MaskToken(2, "learned")
    with torch.no_grad():
        learned.token.copy_(torch.tensor([1.5, -2.0]))
    replaced = learned(x, mask)
    assert torch.all(replaced[:, 0, :8] == 1.5) and torch.all(replaced[:, 1, :8] == -2.0)
    assert torch.equal(replaced[:, :, 8:], x[:, :, 8:])
    with pytest.raises(ValueError, match="mask must be bool"):
        learned(x, mask.float())

    mae = MAENet(tiny_net(), 1, mask_token="learned")
    x1 = volume()
    out = mae(x1, mask[:, :1])
    assert not torch.allclose(out, mae(x1), atol=1e-5)
    out.square().mean().backward()
    assert mae.mask_token.token.grad is not None and mae.mask_token.token.grad.abs().sum() > 0


def test_reparameterization_statistics():
    torch.manual_seed(0)
    mu = torch.full((200_000,), 2.0)
    logvar = torch.full((200_000,), math.log(0.25))
    z = reparameterize(mu, logvar)
    assert abs(z.mean().item() - 2.0) < 0.01 and abs(z.std().item() - 0.5) < 0.01


def test_vae_encode_decode_and_sampling():
    vae = VAEHybridNet(tiny_net(), subject_channels=8, sequence_channels=4)
    x = volume(seed=7)
    latents = vae.encode(x)
    assert set(latents) == {"subject_mu", "subject_logvar", "sequence_mu", "sequence_logvar"}
    assert latents["subject_mu"].shape == (2, 8, 8, 8, 8) and latents["sequence_logvar"].shape == (2, 4, 8, 8, 8)
    swapped = vae.decode(latents["subject_mu"], latents["sequence_mu"].flip(0))  # cross-reconstruction
    assert swapped.shape == (2, 1, *PATCH)
    vae.train()
    sampled = vae(x)
    assert not torch.equal(sampled["subject_z"], sampled["subject_mu"])
    vae.eval()
    with torch.no_grad():
        deterministic = vae(x)
    assert torch.equal(deterministic["subject_z"], deterministic["subject_mu"])
    assert vae.multiscale_features(x).shape == (2, 8 + 16 + 32, 8, 8, 8)


# ---------------------------------------------------------------- gradients

def test_gradients_reach_the_encoder_in_every_model():
    x1, x3 = volume(seed=8), volume(channels=3, seed=8)
    models = [(pretrained(m), x1) for m in PRETRAINING_METHODS]
    models += [(finetuning(t, f, 3), x3) for t in ("segmentation", "classification", "regression")
               for f in ("stem_expansion", "shared_encoder")]
    for model, x in models:
        model.train()
        out = model(x)
        tensors = list(out.values()) if isinstance(out, dict) else [out]
        loss = sum((t * torch.randn_like(t)).mean() for t in tensors)
        loss.backward()
        stem, bottleneck = model.encoder.stages[0], model.encoder.stages[-1]
        for part in (stem, bottleneck):
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None for g in grads), type(model).__name__
            assert sum(g.abs().sum() for g in grads) > 0, type(model).__name__


# ---------------------------------------------------------------- plans and adaptation record

def test_build_finetuning_network_reads_the_plans():
    seg = build_finetuning_network(make_plans("segmentation", ["flair", "dwi"], tiny_net(fusion="stem_expansion"),
                                              labels={"background": 0, "a": 1, "b": 2}))
    assert isinstance(seg, SegmentationNet) and seg.num_classes == 3 and seg.encoder.stages[0][0].convs[0].conv.in_channels == 2
    reg = build_finetuning_network(make_plans("regression", ["t1", "t2"], tiny_net(fusion="shared_encoder"),
                                              method={"pool": "all_stages"}))
    assert isinstance(reg, RegressionNet) and reg.runs_per_sequence and reg.pool == "all_stages"
    assert reg.sequences_apart and reg.head.linear.in_features == 2 * sum(reg.stage_channels)  # default: concat
    learned = build_finetuning_network(make_plans("regression", ["t1", "t2"], tiny_net(fusion="shared_encoder"),
                                                  method={"fusion_weighting": "learned"}))
    assert learned.fusion is not None and learned.head.linear.in_features == sum(learned.stage_channels)
    with pytest.raises(BadInputError, match="input_channels is 1 but the dataset has 2"):
        build_finetuning_network(make_plans("classification", ["t1", "t2"], tiny_net()))
    with pytest.raises(BadInputError, match="pretraining"):
        build_finetuning_network(make_plans("pretraining"))
    with pytest.raises(ValueError, match="unknown pretraining method"):
        build_pretraining_network(make_plans(), "simclr9")
    assert isinstance(build_pretraining_network(make_plans(), "DINO", **SMALL_METHOD), EmbeddingNet)


def test_invalid_network_plan_is_reported_readably():
    with pytest.raises(ValueError, match="kernel_sizes has 2 entries.*3"):
        build_encoder(tiny_net(kernel_sizes=[[3, 3, 3]] * 2), 1)


@pytest.mark.parametrize("method", PRETRAINING_METHODS)
def test_adaptation_record_rebuilds_the_network(method):
    plans = make_plans()
    model = pretrained(method)
    settings = {**SMALL_METHOD, "mask_ratio": 0.6}
    provenance = {"datasets": ["Dataset001_FOMO60K"], "num_scans": 10, "num_subjects": 4, "track": "method"}
    record = json.loads(json.dumps(adaptation_record(model, plans, method, settings, provenance)))
    assert record["encoder_keys"] == list(encoder_state_dict(model))
    assert record["stem_keys"][0] == stem_weight_keys(model)[0] and record["input_channels"] == 1
    assert record["data_provenance"] == provenance and record["pretraining"]["settings"]["mask_ratio"] == 0.6
    assert Plans.from_json(record["plans"]) == plans
    rebuilt = build_from_record(record)
    assert type(rebuilt) is type(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    from_plans = adaptation_record(plans, plans, method, settings, provenance)
    assert from_plans["architecture"] == record["architecture"]


def test_finetuning_model_record_rebuilds_fusion():
    model = finetuning("classification", "shared_encoder", 3)
    record = adaptation_record(model, make_plans(), "mae", {}, {})
    rebuilt = build_from_record(record)
    assert count_parameters(rebuilt) == count_parameters(model) and rebuilt.sequences_apart
    assert record["input_channels"] == 3 and record["encoder_input_channels"] == 1


def test_models_deepcopy_for_ema_teachers():
    student = pretrained("dino").eval()
    teacher = copy.deepcopy(student)
    x = volume(seed=9)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), student(x))
    seg = SegmentationNet(tiny_net(), 1, 2)
    assert count_parameters(copy.deepcopy(seg)) == count_parameters(seg)
