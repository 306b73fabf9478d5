"""Text-conditioned diffusers models: per-row caption embeddings, broadcast conditioning, and
profile_pipeline end to end on a tiny random StableDiffusionPipeline built from configs (no download)."""
import warnings

import diffusers
import numpy as np
import pytest
import torch
import transformers

import entropic_fast as ef
from entropic_fast.adapters import diffusers as dfa
from entropic_fast.errors import InputError


def tiny_sd_pipeline():
    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    tok = transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                                  sample_size=16).eval()
    sched = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             steps_offset=1)
    return diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                             safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline()


def test_caption_embeddings_reach_encoder_hidden_states_row_for_row(pipe):
    den = dfa.denoiser(pipe.unet, pipe.scheduler)
    emb = pipe.encode_prompt(["a cat", "a dog", "a red fox"], "cpu", 1, False)[0]
    x, s = torch.randn(3, 4, 8, 8), torch.tensor([0.5, 2.0, 7.0])
    with torch.no_grad():
        got = den(x, s, emb)
        one = torch.cat([den(x[i:i + 1], s[i:i + 1], emb[i:i + 1]) for i in range(3)])
        swapped = den(x, s, emb[[1, 0, 2]])
    torch.testing.assert_close(got, one, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got[:2], swapped[:2], atol=1e-4)  # the captions matter, per row
    fixed = dfa.denoiser(pipe.unet, pipe.scheduler, encoder_hidden_states=emb[:1])  # batch 1: broadcast
    with torch.no_grad():
        torch.testing.assert_close(fixed(x, s), den(x, s, emb[[0, 0, 0]]), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="encoder_hidden_states has batch 2, the model's batch is 3"):
        dfa.denoiser(pipe.unet, pipe.scheduler, encoder_hidden_states=emb[:2])(x, s)


def test_profile_pipeline_end_to_end(pipe):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    prompts = ["a cat", "a dog", "a fox", "a cat", "a bird", "a dog"]
    den = dfa.denoiser(pipe.unet, pipe.scheduler)
    grid = ef.sigma_grid(6, den.sigma_min, den.sigma_max)
    prof = dfa.profile_pipeline(pipe, images, prompts, grid, samples=16, batch_size=32, progress=False)
    assert np.all(prof.count == 16) and np.all(np.isfinite(prof.mse)) and prof.dim == 4 * 8 * 8
    assert prof.meta["fingerprints"]["labels"] is not None  # the captions are part of the run's identity
    again = dfa.profile_pipeline(pipe, images, prompts, grid, samples=16, batch_size=8, progress=False)
    np.testing.assert_allclose(again.sum, prof.sum, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: the trivial-bound warning
        sig = ef.schedule(prof, 4, "rescaled")
    out = pipe("a cat", height=16, width=16, output_type="latent", guidance_scale=1.0,
               **dfa.to_diffusers(sig, pipe.scheduler))
    assert out.images.shape == (1, 4, 8, 8)
    np.testing.assert_allclose(pipe.scheduler.sigmas.numpy(), sig, rtol=1e-6)
    with pytest.raises(InputError, match="prompts must be one string or one per image"):
        dfa.profile_pipeline(pipe, images, ["a cat"] * 5, grid, samples=4, progress=False)
    with pytest.raises(InputError, match=r"images must lie in \[-1, 1\]"):
        dfa.profile_pipeline(pipe, images * 255, "a cat", grid, samples=4, progress=False)


def test_sdxl_added_conditioning_broadcasts():
    """An SDXL-style UNet (text_time embedding): batch-1 text_embeds / time_ids reach every row."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
    sched = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    cond = {"text_embeds": torch.randn(1, 32), "time_ids": torch.tensor([[16.0, 16, 0, 0, 16, 16]])}
    ehs = torch.randn(1, 5, 32)
    den = dfa.denoiser(unet, sched, encoder_hidden_states=ehs, added_cond_kwargs=cond)
    x, s = torch.randn(3, 4, 8, 8), torch.tensor([0.3, 1.0, 9.0])
    with torch.no_grad():
        got = den(x, s)
        t = den.timestep(s).float()
        eps = unet(x / (1 + s.view(-1, 1, 1, 1) ** 2).sqrt(), t, encoder_hidden_states=ehs.expand(3, -1, -1),
                   added_cond_kwargs={k: v.expand(3, -1) for k, v in cond.items()}).sample
    torch.testing.assert_close(got, x - s.view(-1, 1, 1, 1) * eps, rtol=1e-4, atol=1e-4)
    prof = ef.profile(den, torch.randn(16, 4, 8, 8), ef.sigma_grid(4, den.sigma_min, den.sigma_max), samples=8,
                      progress=False)
    assert np.all(np.isfinite(prof.mse))
