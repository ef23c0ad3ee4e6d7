"""Diffsound's networks, laid out as the authors' published checkpoints so their weights load key for key.

Written here from the layout of yangdongchao/Text-to-sound-Synthesis (files named per class); the
parameter names and shapes are theirs, the code is ours:
- `SpecVQGAN` (Diffsound/sound_synthesis/modeling/codecs/spec_codec/vqgan.py, VQModel; encoder and decoder
  from Diffsound/specvqgan/modules/diffusionmodules/model.py): `encoder.*`, `decoder.*`,
  `quantize.embedding.weight`, `quant_conv`, `post_quant_conv`. A 2-D conv autoencoder over the log-mel
  (mel bins x frames): ResNet blocks with GroupNorm(32), attention blocks where the frame resolution is in
  `attn_resolutions`, stride-2 downsampling per level after the first. Paper config: 80 x 848 -> 5 x 53.
- `PatchDiscriminator` (taming's NLayerDiscriminator, specvqgan/modules/discriminator/model.py): the VQ-GAN
  adversarial loss's discriminator, `loss.discriminator.main.*` in the VQ-VAE checkpoint.
- `DiffusionNet` (Diffsound/sound_synthesis/modeling/transformers/transformer_utils.py, Text2ImageTransformer
  with DalleMaskImageEmbedding): `content_emb.{emb,height_emb,width_emb}`, `blocks.N.{ln1,ln1_1}` (AdaLN
  with a learned time-step embedding), `blocks.N.attn1` (self), `blocks.N.attn2` (cross to the text),
  `blocks.N.ln2`, `blocks.N.mlp.{0,2}`, `to_logits.{0,1}`.
The authors flatten the 5 x 53 token grid column-major (ColumnMajor permuter) and add positions by
sequence index over a row-major (height, width) table; `grid_sequence` / `sequence_grid` and
`ContentEmbedding` do the same, so their weights see what they were trained on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).flatten(2) for m in (self.q, self.k, self.v))  # [B, C, HW]
        att = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # [B, HW, HW]
        return x + self.proj_out((v @ att.transpose(1, 2)).view(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric padding, as taming's


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(blocks: list[nn.Module], attns: list[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attns)
    return level


def _mid(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = ResnetBlock(channels, channels), AttnBlock(channels), \
        ResnetBlock(channels, channels)
    return mid


def _run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):
            h = level.attn[i](h)
    return h


class Encoder(nn.Module):
    def __init__(self, ch: int, ch_mult: list[int], num_res_blocks: int, attn_resolutions: list[int],
                 resolution: int, z_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(1, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin, res = ch, resolution
        for i, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(cin, ch * mult))
                cin = ch * mult
                if res in attn_resolutions:
                    attns.append(AttnBlock(cin))
            level = _level(blocks, attns)
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(cin)
                res //= 2
            self.down.append(level)
        self.mid = _mid(cin)
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch: int, ch_mult: list[int], num_res_blocks: int, attn_resolutions: list[int],
                 resolution: int, z_channels: int):
        super().__init__()
        cin, res = ch * ch_mult[-1], resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = _mid(cin)
        levels = []
        for i in reversed(range(len(ch_mult))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(cin, ch * ch_mult[i]))
                cin = ch * ch_mult[i]
                if res in attn_resolutions:
                    attns.append(AttnBlock(cin))
            level = _level(blocks, attns)
            if i != 0:
                level.upsample = Upsample(cin)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [B, D, H, W] -> (token grid [B, H, W], quantized [B, D, H, W]): the nearest entry per cell."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        book = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.T + book.pow(2).sum(1)
        tokens = dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])
        return tokens, self.lookup(tokens)

    def lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding(tokens).permute(0, 3, 1, 2)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (taming's NLayerDiscriminator: conv 4x4, BatchNorm, LeakyReLU 0.2)."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        seq, mult = [nn.Conv2d(1, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(channels * prev, channels * mult, 4, 2 if n < layers else 1, 1, bias=False),
                    nn.BatchNorm2d(channels * mult), nn.LeakyReLU(0.2, True)]
        seq.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class VQLoss(nn.Module):
    """Holds the discriminator under the checkpoint's name (`loss.discriminator`)."""

    def __init__(self, channels: int, layers: int):
        super().__init__()
        self.discriminator = PatchDiscriminator(channels, layers)


class SpecVQGAN(nn.Module):
    """Log-mel [B, n_mels, frames] <-> token grid [B, n_mels / d, frames / d], d = 2^(levels - 1)."""

    def __init__(self, c: dict):
        super().__init__()
        args = (c["vq_ch"], c["vq_ch_mult"], c["vq_res_blocks"], c["vq_attn_resolutions"], c["vq_resolution"],
                c["z_channels"])
        self.encoder, self.decoder = Encoder(*args), Decoder(*args)
        self.quantize = VectorQuantizer(c["codebook_size"], c["code_dim"])
        self.quant_conv = nn.Conv2d(c["z_channels"], c["code_dim"], 1)
        self.post_quant_conv = nn.Conv2d(c["code_dim"], c["z_channels"], 1)
        if c["adversarial_weight"] > 0:
            self.loss = VQLoss(c["disc_channels"], c["disc_layers"])

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.quant_conv(self.encoder(mel[:, None])))[0]

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(self.quantize.lookup(tokens)))[:, 0]

    def loss_terms(self, mel: torch.Tensor, adversarial_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, token grid): eq. 2 (L1 reconstruction + codebook + 0.25 commitment) plus, with a weight, eq. 3's
        adversarial term as VQ-GAN trains it (hinge losses; the discriminator's own loss added with its
        gradient cut from the autoencoder, the generator's term with the discriminator's weights frozen)."""
        z = self.quant_conv(self.encoder(mel[:, None]))
        tokens, q = self.quantize(z)
        recon = self.decoder(self.post_quant_conv(z + (q - z).detach()))  # straight-through estimator
        loss = (F.l1_loss(recon[:, 0], mel) + F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach()))
        if adversarial_weight > 0:
            disc = self.loss.discriminator
            d_loss = 0.5 * (F.relu(1 - disc(mel[:, None])).mean() + F.relu(1 + disc(recon.detach())).mean())
            frozen = {k: v.detach() for k, v in disc.named_parameters()}
            g_loss = -torch.func.functional_call(disc, frozen, (recon,)).mean()
            loss = loss + d_loss + adversarial_weight * g_loss
        return loss, tokens


# ---------------------------------------------------------------------------------- diffusion transformer

class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift come from a learned embedding of the time step."""

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.emb = nn.Embedding(steps, dim)
        self.linear = nn.Linear(dim, 2 * dim)
        self.layernorm = nn.LayerNorm(dim, elementwise_affine=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(self.emb(t))).unsqueeze(1).chunk(2, dim=2)
        return self.layernorm(x) * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention with separate key/query/value/proj linears (self: kv_dim = dim)."""

    def __init__(self, dim: int, heads: int, kv_dim: int):
        super().__init__()
        self.heads = heads
        self.key, self.value = nn.Linear(kv_dim, dim), nn.Linear(kv_dim, dim)
        self.query, self.proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda y: y.view(b, y.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        mask = None if pad is None else ~pad[:, None, None, :]
        y = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(context)),
                                           split(self.value(context)), attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class GELU2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Self-attention, cross-attention to the text, MLP; the time step enters through both AdaLNs."""

    def __init__(self, dim: int, heads: int, text_dim: int, steps: int, mlp_ratio: int):
        super().__init__()
        self.ln1, self.ln1_1 = AdaLayerNorm(dim, steps), AdaLayerNorm(dim, steps)
        self.attn1, self.attn2 = Attention(dim, heads, dim), Attention(dim, heads, text_dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), GELU2(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x, text, text_pad, t):
        h = self.ln1(x, t)
        x = x + self.attn1(h, h)
        x = x + self.attn2(self.ln1_1(x, t), text, text_pad)
        return x + self.mlp(self.ln2(x))


class ContentEmbedding(nn.Module):
    """Token embedding (K codes + [MASK]) plus height and width embeddings, added by sequence index over the
    row-major (height, width) table, as the authors do."""

    def __init__(self, codebook_size: int, grid: tuple[int, int], dim: int):
        super().__init__()
        self.grid = grid
        self.emb = nn.Embedding(codebook_size + 1, dim)
        self.height_emb, self.width_emb = nn.Embedding(grid[0], dim), nn.Embedding(grid[1], dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.grid
        pos = (self.height_emb.weight[:, None] + self.width_emb.weight[None, :]).reshape(h * w, -1)
        return self.emb(x) + pos[:x.shape[1]]


class DiffusionNet(nn.Module):
    """p(x0 | x_t, text) logits [B, N, K] over the token sequence (Text2ImageTransformer's layout)."""

    def __init__(self, c: dict, grid: tuple[int, int]):
        super().__init__()
        self.content_emb = ContentEmbedding(c["codebook_size"], grid, c["dim"])
        self.blocks = nn.Sequential(*(Block(c["dim"], c["heads"], c["text_dim"], c["timesteps"], c["mlp_ratio"])
                                      for _ in range(c["layers"])))
        self.to_logits = nn.Sequential(nn.LayerNorm(c["dim"]), nn.Linear(c["dim"], c["codebook_size"]))
        self.apply(_init_weights)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor) -> torch.Tensor:
        h = self.content_emb(x_t)
        for block in self.blocks:
            h = block(h, text, text_pad, t)
        return self.to_logits(h)


def _init_weights(module: nn.Module) -> None:
    # the authors' initialisation: N(0, 0.02) linears and embeddings, zero biases
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


class DiffusionTransformer(nn.Module):
    """`condition_emb` (the text encoder) beside `transformer` (the network), as in the authors' checkpoint."""

    def __init__(self, condition_emb: nn.Module, net: DiffusionNet):
        super().__init__()
        self.condition_emb, self.transformer = condition_emb, net


def grid_sequence(tokens: torch.Tensor) -> torch.Tensor:
    """Token grid [B, H, W] -> sequence [B, H*W], column-major (frame by frame), as the authors' permuter."""
    return tokens.transpose(1, 2).flatten(1)


def sequence_grid(seq: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of grid_sequence: [B, H*W] -> [B, H, W]."""
    return seq.view(seq.shape[0], grid[1], grid[0]).transpose(1, 2)
