"""Tiny published-pipeline stand-ins for tests: same classes as the real repos, random weights, built offline."""
import torch

from generators.audioldm2_tiny import _roberta_tokenizer, _t5_tokenizer, import_diffusers


def save_in_hf_cache(hf_home, repo: str, save, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """Save with `save(folder)` under `repo` in the hub cache layout (refs/main -> snapshots/COMMIT)."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    save(root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)


def tiny_audioldm(seed: int = 0):
    """AudioLDMPipeline (cvssp/audioldm-s-full-v2's classes) with a few thousand random parameters."""
    import_diffusers()
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(8, 16),
            class_embed_type="simple_projection", projection_class_embeddings_input_dim=8, class_embeddings_concat=True)
        vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, latent_channels=4,
                            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                            norm_num_groups=8)
        text_encoder = ClapTextModelWithProjection(ClapTextConfig(
            bos_token_id=0, eos_token_id=2, hidden_size=8, intermediate_size=37, layer_norm_eps=1e-5,
            num_attention_heads=1, num_hidden_layers=1, pad_token_id=1, vocab_size=1000, projection_dim=8))
        vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[2, 2],
            upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
            normalize_before=False))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    return AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=_roberta_tokenizer(), unet=unet,
                            scheduler=scheduler, vocoder=vocoder)


def tiny_musicgen(seed: int = 0):
    """(MusicgenForConditionalGeneration, MusicgenProcessor) with facebook/musicgen-small's classes, tiny."""
    from generators.musicgen import import_transformers

    tf = import_transformers()
    audio = tf.EncodecConfig(hidden_size=8, num_filters=4, upsampling_ratios=[4, 4], codebook_size=64, codebook_dim=8,
                             sampling_rate=16000, audio_channels=1, num_residual_layers=1, num_lstm_layers=1,
                             target_bandwidths=[40.0])  # several codebooks at 1000 frames/s
    decoder = tf.MusicgenDecoderConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       ffn_dim=32, num_codebooks=audio.num_quantizers, audio_channels=1,
                                       pad_token_id=64, bos_token_id=64)
    text = tf.T5Config(vocab_size=99, d_model=16, d_ff=37, d_kv=8, num_heads=2, num_layers=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.MusicgenForConditionalGeneration(tf.MusicgenConfig(
            text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict()))
        for layer in model.audio_encoder.quantizer.layers:  # codebooks start as zeros: every code would sound alike
            layer.codebook.embed.normal_()
    model.generation_config.decoder_start_token_id = 64
    model.generation_config.pad_token_id = 64
    processor = tf.MusicgenProcessor(feature_extractor=tf.EncodecFeatureExtractor(sampling_rate=16000),
                                     tokenizer=_t5_tokenizer())
    return model, processor
