"""The Diffsound authors' checkpoint layout, enumerated name by name from their code (yangdongchao/
Text-to-sound-Synthesis: specvqgan/modules/diffusionmodules/model.py Encoder/Decoder, taming's
NLayerDiscriminator, modules/clip/model.py, transformers/transformer_utils.py Text2ImageTransformer,
embeddings/dalle_mask_image_embedding.py, transformers/diffusion_transformer.py buffers), independently of
generators.diffsound_modules, so the tests compare our modules against it."""
from __future__ import annotations


def _resnet(out: dict, prefix: str, cin: int, cout: int) -> None:
    out.update({f"{prefix}.norm1.weight": (cin,), f"{prefix}.norm1.bias": (cin,),
                f"{prefix}.conv1.weight": (cout, cin, 3, 3), f"{prefix}.conv1.bias": (cout,),
                f"{prefix}.norm2.weight": (cout,), f"{prefix}.norm2.bias": (cout,),
                f"{prefix}.conv2.weight": (cout, cout, 3, 3), f"{prefix}.conv2.bias": (cout,)})
    if cin != cout:
        out.update({f"{prefix}.nin_shortcut.weight": (cout, cin, 1, 1), f"{prefix}.nin_shortcut.bias": (cout,)})


def _attn(out: dict, prefix: str, c: int) -> None:
    out.update({f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,)})
    for name in ("q", "k", "v", "proj_out"):
        out.update({f"{prefix}.{name}.weight": (c, c, 1, 1), f"{prefix}.{name}.bias": (c,)})


def _mid(out: dict, prefix: str, c: int) -> None:
    _resnet(out, f"{prefix}.mid.block_1", c, c)
    _attn(out, f"{prefix}.mid.attn_1", c)
    _resnet(out, f"{prefix}.mid.block_2", c, c)


def vqgan_layout(c: dict) -> dict:
    """VQModel's state dict (content_codec in the diffusion checkpoint) without the loss."""
    ch, mult, nrb, attn, z = c["vq_ch"], c["vq_ch_mult"], c["vq_res_blocks"], c["vq_attn_resolutions"], c["z_channels"]
    out = {"encoder.conv_in.weight": (ch, 1, 3, 3), "encoder.conv_in.bias": (ch,)}
    in_mult, res = (1,) + tuple(mult), c["vq_resolution"]
    for i in range(len(mult)):
        block_in, block_out = ch * in_mult[i], ch * mult[i]
        for j in range(nrb):
            _resnet(out, f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if res in attn:
                _attn(out, f"encoder.down.{i}.attn.{j}", block_in)
        if i != len(mult) - 1:
            out.update({f"encoder.down.{i}.downsample.conv.weight": (block_in, block_in, 3, 3),
                        f"encoder.down.{i}.downsample.conv.bias": (block_in,)})
            res //= 2
    _mid(out, "encoder", block_in)
    out.update({"encoder.norm_out.weight": (block_in,), "encoder.norm_out.bias": (block_in,),
                "encoder.conv_out.weight": (z, block_in, 3, 3), "encoder.conv_out.bias": (z,)})
    block_in, res = ch * mult[-1], c["vq_resolution"] // 2 ** (len(mult) - 1)
    out.update({"decoder.conv_in.weight": (block_in, z, 3, 3), "decoder.conv_in.bias": (block_in,)})
    _mid(out, "decoder", block_in)
    for i in reversed(range(len(mult))):
        block_out = ch * mult[i]
        for j in range(nrb + 1):
            _resnet(out, f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if res in attn:
                _attn(out, f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            out.update({f"decoder.up.{i}.upsample.conv.weight": (block_in, block_in, 3, 3),
                        f"decoder.up.{i}.upsample.conv.bias": (block_in,)})
            res *= 2
    out.update({"decoder.norm_out.weight": (block_in,), "decoder.norm_out.bias": (block_in,),
                "decoder.conv_out.weight": (1, block_in, 3, 3), "decoder.conv_out.bias": (1,),
                "quantize.embedding.weight": (c["codebook_size"], c["code_dim"]),
                "quant_conv.weight": (c["code_dim"], z, 1, 1), "quant_conv.bias": (c["code_dim"],),
                "post_quant_conv.weight": (z, c["code_dim"], 1, 1), "post_quant_conv.bias": (z,)})
    return out


def discriminator_layout(ndf: int, n_layers: int) -> dict:
    """NLayerDiscriminator(input_nc=1) under the VQ-VAE checkpoint's `loss.discriminator.`."""
    out = {"main.0.weight": (ndf, 1, 4, 4), "main.0.bias": (ndf,)}
    index, mult = 2, 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2 ** n, 8)
        out[f"main.{index}.weight"] = (ndf * mult, ndf * prev, 4, 4)
        bn = f"main.{index + 1}"
        out.update({f"{bn}.weight": (ndf * mult,), f"{bn}.bias": (ndf * mult,), f"{bn}.running_mean": (ndf * mult,),
                    f"{bn}.running_var": (ndf * mult,), f"{bn}.num_batches_tracked": ()})
        index += 3
    out.update({f"main.{index}.weight": (1, ndf * mult, 4, 4), f"main.{index}.bias": (1,)})
    return {f"loss.discriminator.{k}": v for k, v in out.items()}


def clip_text_layout(vocab: int, context: int, width: int, layers: int, embed: int) -> dict:
    out = {"token_embedding.weight": (vocab, width), "positional_embedding": (context, width),
           "ln_final.weight": (width,), "ln_final.bias": (width,), "text_projection": (width, embed)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}"
        out.update({f"{p}.attn.in_proj_weight": (3 * width, width), f"{p}.attn.in_proj_bias": (3 * width,),
                    f"{p}.attn.out_proj.weight": (width, width), f"{p}.attn.out_proj.bias": (width,),
                    f"{p}.ln_1.weight": (width,), f"{p}.ln_1.bias": (width,), f"{p}.ln_2.weight": (width,),
                    f"{p}.ln_2.bias": (width,), f"{p}.mlp.c_fc.weight": (4 * width, width),
                    f"{p}.mlp.c_fc.bias": (4 * width,), f"{p}.mlp.c_proj.weight": (width, 4 * width),
                    f"{p}.mlp.c_proj.bias": (width,)})
    return out


def transformer_layout(c: dict, grid: tuple[int, int]) -> dict:
    """Text2ImageTransformer (with its content embedding) as `transformer.transformer.` holds it."""
    d, k, t, text, n = c["dim"], c["codebook_size"], c["timesteps"], c["text_dim"], grid[0] * grid[1]
    out = {"content_emb.emb.weight": (k + 1, d), "content_emb.height_emb.weight": (grid[0], d),
           "content_emb.width_emb.weight": (grid[1], d), "to_logits.0.weight": (d,), "to_logits.0.bias": (d,),
           "to_logits.1.weight": (k, d), "to_logits.1.bias": (k,)}
    for i in range(c["layers"]):
        p = f"blocks.{i}"
        for ln in ("ln1", "ln1_1"):
            out.update({f"{p}.{ln}.emb.weight": (t, d), f"{p}.{ln}.linear.weight": (2 * d, d),
                        f"{p}.{ln}.linear.bias": (2 * d,)})
        out.update({f"{p}.ln2.weight": (d,), f"{p}.ln2.bias": (d,), f"{p}.attn2.mask": (1, 1, n, n),
                    f"{p}.mlp.0.weight": (c["mlp_ratio"] * d, d), f"{p}.mlp.0.bias": (c["mlp_ratio"] * d,),
                    f"{p}.mlp.2.weight": (d, c["mlp_ratio"] * d), f"{p}.mlp.2.bias": (d,)})
        for attn, kv in (("attn1", d), ("attn2", text)):
            out.update({f"{p}.{attn}.key.weight": (d, kv), f"{p}.{attn}.value.weight": (d, kv),
                        f"{p}.{attn}.query.weight": (d, d), f"{p}.{attn}.proj.weight": (d, d)})
            out.update({f"{p}.{attn}.{m}.bias": (d,) for m in ("key", "value", "query", "proj")})
    return out


SCHEDULE = ("log_at", "log_bt", "log_ct", "log_cumprod_at", "log_cumprod_bt", "log_cumprod_ct", "log_1_min_ct",
            "log_1_min_cumprod_ct", "Lt_history", "Lt_count")


def diffusion_checkpoint_layout(c: dict, grid: tuple[int, int]) -> dict:
    """The DALLE state dict ("model" in the diffusion checkpoint): name -> shape."""
    out = {f"content_codec.{k}": v for k, v in vqgan_layout(c).items()}
    clip = clip_text_layout(c["text_vocab"], c["text_max_words"], c["text_dim"], c["text_layers"], c["text_dim"])
    out.update({f"transformer.condition_emb.{k}": v for k, v in clip.items()})
    out.update({f"transformer.transformer.{k}": v for k, v in transformer_layout(c, grid).items()})
    out.update({f"transformer.{name}": (c["timesteps"],) for name in SCHEDULE})
    return out
