"""A tiny AudioLDM 2 pipeline assembled from component configs, with seeded random weights, offline.

Same classes and wiring as cvssp/audioldm2 (CLAP + T5 text encoders, projection model, GPT-2 language
model producing the "AudioMAE" sequence, two-stream UNet, mel VAE, SpeechT5 HiFi-GAN vocoder at 16 kHz,
hop 160), scaled down to a few thousand parameters so it builds in a second and samples in well under
one. It is what `audioldm2` runs without a checkpoint (labelled `untrained`) and what the tests save
into a test-filled HF cache under a real repo id to exercise the user's loading path.
"""
from __future__ import annotations

import torch

from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable
from bench.core.extras import require

# A small word list for the in-memory tokenizers (unknown words map to <unk>; fine for random weights).
_WORDS = ("a an the of on in with and is are dog dogs bark barks barking man woman speaks speaking "
          "rain falls falling bird birds chirp chirping car engine music piano guitar drum beat noise "
          "water wind sine tone chord click clicks plays playing loud soft low high").split()


def _roberta_tokenizer():
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    # byte-level BPE alphabet (GPT-2's byte-to-unicode table maps printable ASCII to itself, space to Ġ)
    alphabet = [chr(c) for c in range(33, 127)] + ["Ġ"]
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    merges = []
    for word in _WORDS:  # merge each word left to right so whole words become single tokens
        piece = "Ġ" + word[0]
        merges.append(("Ġ", word[0]))
        vocab.setdefault(piece, len(vocab))
        for ch in word[1:]:
            merges.append((piece, ch))
            piece += ch
            vocab.setdefault(piece, len(vocab))
    merges = list(dict.fromkeys(merges))
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _t5_tokenizer():
    from transformers import T5Tokenizer

    # a Unigram vocabulary like T5's sentencepiece one: whole words with a "▁" word-start marker
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [("▁" + w, -1.0) for w in _WORDS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=77)


def import_diffusers():
    """diffusers' AudioLDM 2 module imports torchvision and torchaudio, whose CUDA-only wheels fail to
    load on CPU torch: apply the project's one compatibility shim (no-op where they import) first."""
    ensure_torchvision_importable()
    ensure_torchaudio_importable()
    require("transformers", "diffusers", "the audioldm2 generator")
    return require("diffusers", "diffusers", "the audioldm2 generator")


def build_tiny_pipeline(seed: int = 0):
    """AudioLDM2Pipeline with every component tiny; weights from `seed` (global RNG restored after)."""
    import_diffusers()
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, \
        AutoencoderKL, DDIMScheduler
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig,
                              GPT2Config, GPT2LMHeadModel, SpeechT5HifiGan, SpeechT5HifiGanConfig, T5Config,
                              T5EncoderModel)

    mel_bins = 16
    with torch.random.fork_rng(devices=[]):  # module init draws from the global RNG: fence it
        torch.manual_seed(seed)
        unet = AudioLDM2UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32,
            in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            # per block: self-attention, then GPT-2 stream (dim 16), then T5 stream (dim 32), as in the real one
            cross_attention_dim=([None, 16, 32], [None, 16, 32]))
        vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=8,
                            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                            latent_channels=4)
        text_config = ClapTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=16, intermediate_size=37,
                                     layer_norm_eps=1e-5, num_attention_heads=2, num_hidden_layers=1,
                                     pad_token_id=1, vocab_size=1000, projection_dim=16)
        # a two-stage Swin over 4-channel (fusion) mel images of 128 frames x 32 mels, as the real one is laid out
        audio_config = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=32, intermediate_size=37,
                                       layer_norm_eps=1e-5, depths=[1, 1], num_attention_heads=[1, 1],
                                       num_hidden_layers=2, hidden_size=32, patch_embeds_hidden_size=16,
                                       projection_dim=16, projection_hidden_size=16, patch_size=2, patch_stride=2,
                                       patch_embed_input_channels=4)
        clap = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(),
                                    projection_dim=16))
        t5 = T5EncoderModel(T5Config(vocab_size=len(_WORDS) + 4, d_model=32, d_ff=37, d_kv=8, num_heads=2,
                                     num_layers=1))
        gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=1000, n_ctx=99,
                                          n_positions=99, bos_token_id=0, eos_token_id=2))
        gpt2.config.max_new_tokens = 8
        projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=mel_bins, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[4, 4, 10],
            upsample_kernel_sizes=[8, 8, 20], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
            normalize_before=False))
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    # CLAP's audio input (used only for reranking): 1 s windows, 101 frames x 32 mels
    feature_extractor = ClapFeatureExtractor(feature_size=32, sampling_rate=16000, hop_length=160, max_length_s=1,
                                             fft_window_size=512, frequency_max=8000)
    return AudioLDM2Pipeline(vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=projection,
                             language_model=gpt2, tokenizer=_roberta_tokenizer(), tokenizer_2=_t5_tokenizer(),
                             feature_extractor=feature_extractor, unet=unet, scheduler=scheduler, vocoder=vocoder)
