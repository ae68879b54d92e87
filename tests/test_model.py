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
