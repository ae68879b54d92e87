import pytest
import torch
import torch.nn.functional as F

from musicdiff_nb import DiT, DiTConfig
from musicdiff_nb.model import deembed_patches

from conftest import randomize

SEED_PARAMETERS = 5_388_802  # reported by the seed


@pytest.mark.parametrize("input_size, patch", [((64, 32), 8), ((128, 256), 16), ((32, 96), 4)])
def test_non_square_shapes(input_size, patch):
    model = DiT(DiTConfig.preset("tiny", input_size=input_size, patch_size=patch))
    x = torch.randn(3, 2, *input_size)
    assert model(x, torch.tensor([0, 10, 999])).shape == x.shape
    assert model(x, 5).shape == x.shape  # a scalar t is broadcast
    assert model.config.num_tokens == (input_size[0] // patch) * (input_size[1] // patch)


def test_seed_preset_reproduces_the_seed_model():
    config = DiTConfig.preset("seed")
    model = DiT(config)
    assert (config.depth, config.num_heads, config.in_channels) == (4, 4, 2)
    assert isinstance(model.patch_embed, torch.nn.Conv2d)
    assert isinstance(model.final_layer.deembed, torch.nn.ConvTranspose2d)
    count = model.num_parameters()
    assert count == 5_259_522 == sum(model.parameter_counts().values())
    assert abs(count - SEED_PARAMETERS) / SEED_PARAMETERS < 0.05


@pytest.mark.parametrize("input_size, patch", [((64, 32), 8), ((32, 96), 4)])
def test_patch_deembedding_is_the_transposed_convolution(input_size, patch):
    model = randomize(DiT(DiTConfig.preset("tiny", input_size=input_size, patch_size=patch)))
    deembed, grid = model.final_layer.deembed, model.config.grid_size
    tokens = torch.randn(3, model.config.num_tokens, model.config.hidden_size)
    expected = deembed(tokens.transpose(1, 2).unflatten(2, grid))
    assert torch.allclose(deembed_patches(tokens, deembed, grid), expected, atol=1e-5)


@pytest.mark.parametrize("input_size, patch", [((64, 32), 8), ((32, 96), 4)])
def test_patchify_gives_the_patches_the_patch_embedding_reads(input_size, patch):
    """Token n of patch_embed is the linear map of patchify's row n, and that
    row is the patch at grid cell divmod(n, cols): rows of frequency, then time."""
    model = randomize(DiT(DiTConfig.preset("tiny", input_size=input_size, patch_size=patch)))
    x = torch.randn(3, 2, *input_size)
    pixels = model.patchify(x)
    assert pixels.shape == (3, model.config.num_tokens, 2 * patch * patch)
    conv = model.patch_embed(x).flatten(2).transpose(1, 2)
    assert torch.allclose(pixels @ model.patch_embed.weight.flatten(1).T + model.patch_embed.bias, conv, atol=1e-5)
    n = model.config.num_tokens - 2
    row, col = divmod(n, model.config.grid_size[1])
    assert torch.equal(pixels[1, n], x[1, :, row * patch:(row + 1) * patch, col * patch:(col + 1) * patch].flatten())
    with pytest.raises(ValueError, match="DiT expects x_t of shape"):
        model.patchify(torch.randn(1, 2, input_size[0], input_size[1] + patch))


@pytest.mark.parametrize("input_size, patch, middle", [((64, 32), 8, 4 * 4 + 2), ((32, 96), 4, 4 * 24 + 12),
                                                       ((24, 40), 8, 1 * 5 + 2)])
def test_middle_token_is_the_centre_of_the_grid(input_size, patch, middle):
    assert DiTConfig.preset("tiny", input_size=input_size, patch_size=patch).middle_token == middle


def test_fresh_adaln_zero_block_is_the_identity():
    model = DiT(DiTConfig.preset("tiny"))
    x, c = torch.randn(2, 10, 64), torch.randn(2, 64)
    assert torch.equal(model.blocks[0](x, c), x)
    assert torch.count_nonzero(model(torch.randn(2, 2, 128, 128), 3)) == 0  # zero-initialised output


def test_condition_changes_the_output_and_null_works():
    model = randomize(DiT(DiTConfig.preset("tiny", input_size=(32, 32), cond_dim=6))).eval()
    x, t = torch.randn(4, 2, 32, 32), torch.tensor([5, 50, 500, 900])
    a, b = torch.eye(6)[:4], torch.eye(6)[2:]
    assert not torch.allclose(model(x, t, a), model(x, t, b), atol=1e-4)
    unconditional = model(x, t)  # cond=None: the learned null condition
    all_dropped = model(x, t, a, drop_cond=torch.ones(4, dtype=torch.bool))
    assert torch.allclose(unconditional, all_dropped, atol=1e-6)
    mixed = model(x, t, a, drop_cond=torch.tensor([True, False, True, False]))
    assert torch.allclose(mixed[0], unconditional[0], atol=1e-6)
    assert torch.allclose(mixed[1], model(x, t, a)[1], atol=1e-6)


def test_sdpa_attention_matches_the_explicit_softmax():
    model = randomize(DiT(DiTConfig.preset("tiny", input_size=(32, 32)))).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, 16, 64)
    q, k, v = attn._heads(x)
    explicit = attn.proj((attn.weights(x) @ v).transpose(1, 2).flatten(2))
    assert torch.allclose(attn(x), explicit, atol=1e-5)
    maps = model.attention_maps(torch.randn(2, 2, 32, 32), 10)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 16, 16)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 2, 16))


def test_invalid_configs_fail_before_compute():
    with pytest.raises(ValueError, match="patch_size"):
        DiTConfig(input_size=(100, 64), patch_size=16)
    with pytest.raises(ValueError, match="num_heads"):
        DiTConfig(hidden_size=96, num_heads=5)
    with pytest.raises(ValueError, match="prediction_type"):
        DiTConfig(prediction_type="noise")
    with pytest.raises(ValueError, match="unknown DiT preset"):
        DiTConfig.preset("huge")
    model = DiT(DiTConfig.preset("tiny"))
    with pytest.raises(ValueError, match="expects x_t of shape"):
        model(torch.randn(1, 2, 64, 64), 0)
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(1, 2, 128, 128), 0, cond=torch.ones(1, 3))


def test_gradients_reach_every_parameter():
    model = randomize(DiT(DiTConfig.preset("tiny", input_size=(32, 32), cond_dim=3)))
    out = model(torch.randn(2, 2, 32, 32), torch.tensor([1, 2]), torch.ones(2, 3),
                drop_cond=torch.tensor([True, False]))
    F.mse_loss(out, torch.zeros_like(out)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_traces_whole_under_torch_compile():
    """TrainConfig(compile=True) compiles the model: no graph break, forward or backward."""
    model = randomize(DiT(DiTConfig.preset("tiny", input_size=(32, 32), cond_dim=3)))
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    x, cond = torch.randn(2, 2, 32, 32), torch.ones(2, 3)
    out = compiled(x, torch.tensor([1, 500]), cond, drop_cond=torch.tensor([True, False]))
    assert torch.allclose(out, model(x, torch.tensor([1, 500]), cond, drop_cond=torch.tensor([True, False])),
                          atol=1e-5)
    out.square().mean().backward()
    assert compiled(x, 7, cond).shape == x.shape  # a number as the timestep


@pytest.mark.parametrize("head", ["linear", "overlap", "conv"])
@pytest.mark.parametrize("patch", [(4, 8), 8])
def test_rectangular_patches_and_heads(patch, head):
    """Patches of (frequency, time) sides and each output head: the shapes
    follow, a fresh model outputs zero, a training step changes it, and the
    parameter counts list every part."""
    config = DiTConfig.preset("tiny", input_size=(32, 64), patch_size=patch, head=head)
    pf, pt = config.patch
    assert config.grid_size == (32 // pf, 64 // pt) and config.num_tokens == 32 * 64 // (pf * pt)
    model = DiT(config)
    x = torch.randn(3, 2, 32, 64)
    assert model.patchify(x).shape == (3, config.num_tokens, 2 * pf * pt)
    out = model(x, torch.tensor([1, 50, 500]))
    assert out.shape == x.shape and torch.count_nonzero(out) == 0  # zero-initialised output, as DiT's
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(2):  # the first step moves only the output layer, the second reaches the rest
        F.mse_loss(model(x, 10), x).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.count_nonzero(model(x, 10)) > 0
    counts = model.parameter_counts()
    assert sum(counts.values()) == model.num_parameters()
    deembed = next(name for name in counts if "de-embed" in name)
    assert ("kernel" in deembed) == (head != "linear")
    assert ("output convolution (Conv2d 3x3)" in counts) == (head == "conv")


@pytest.mark.parametrize("head", ["linear", "overlap", "conv"])
def test_heads_are_their_convolutions(head):
    """The fast de-embedding equals the ConvTranspose2d it stands for (overlap:
    kernel twice the patch, every output written by the patch it lies in and its
    neighbours); the conv head mixes values across patch borders."""
    model = randomize(DiT(DiTConfig.preset("tiny", input_size=(32, 64), patch_size=(4, 8), head=head)))
    final, grid = model.final_layer, model.config.grid_size
    tokens = torch.randn(2, model.config.num_tokens, model.config.hidden_size)
    expected = final.deembed(tokens.transpose(1, 2).unflatten(2, grid))
    assert torch.allclose(deembed_patches(tokens, final.deembed, grid), expected, atol=1e-5)
    assert final.deembed.kernel_size == ((8, 16) if head == "overlap" else (4, 8))

    def decode(tokens):
        image = deembed_patches(tokens, final.deembed, grid)
        return image if final.conv is None else final.conv(F.silu(image))

    one = torch.zeros_like(tokens)
    one[:, model.config.middle_token] = tokens[:, model.config.middle_token]  # a single token's reach:
    touched = (decode(one) - decode(torch.zeros_like(one))).abs().sum((0, 1)) > 0  # the values it changes
    reach = (int(touched.any(1).sum()), int(touched.any(0).sum()))
    assert reach == {"linear": (4, 8), "overlap": (8, 16), "conv": (6, 10)}[head], reach


def test_a_patch_pair_survives_the_config_round_trip():
    config = DiTConfig.preset("tiny", patch_size=[4, 8], head="overlap")
    assert config.patch_size == (4, 8) and DiTConfig(**config.to_dict()) == config
    with pytest.raises(ValueError, match=r"does not divide by patch_size=\(4, 12\)"):
        DiTConfig.preset("tiny", patch_size=(4, 12))
    with pytest.raises(ValueError, match="head='unet'"):
        DiTConfig.preset("tiny", head="unet")
