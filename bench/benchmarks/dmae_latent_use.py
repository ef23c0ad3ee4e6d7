"""Does the diffusion magnitude autoencoder (archisound-dmae) use its latent? Trains one on the built-in set
and decodes every clip from its own latent and from another clip's (same noise), against the untrained
decoder and two references: silence and another clip.

    python -m bench.benchmarks.dmae_latent_use                          # the test's run: 200 steps
    python -m bench.benchmarks.dmae_latent_use --steps 1500             # longer
    python -m bench.benchmarks.dmae_latent_use --config sigma_data=1.0 latent_film=false latent_gain=false

Reconstruction error: mean |log10 mel power| difference (32 mel bands, 256-point STFT, power floor 1e-4)
between the decoded and the original clip (8 clips of 0.5 s at 8 kHz, seed 1), decoded with 10 sampler
steps. A decoder that uses its latent scores clearly lower with the clip's own latent than with another
clip's. Denoising error: mean squared error of the decoder's one-step estimate of each clip from the clip
noised to t = 0.5 (alpha = sigma; the same noise for every latent), given its own latent, another clip's,
or zeros; the clips' mean square for scale. The latent shows there before it shows in sampled audio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

N_SAMPLES = 3968  # 31 latent frames of the tiny config, within the 0.5 s clips


def logmel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    import librosa

    fb = torch.from_numpy(librosa.filters.mel(sr=8000, n_fft=256, n_mels=32)).float()

    def logmel(x):
        power = torch.stft(x, 256, 64, window=torch.hann_window(256), return_complex=True).abs().pow(2)
        return torch.log10(fb @ power + 1e-4)

    return float((logmel(a) - logmel(b)).abs().mean())


def clips(data) -> torch.Tensor:
    """The set's clips as one [n, 1, N_SAMPLES] batch."""
    return torch.stack([torch.from_numpy(np.asarray(data.load(c)[0], np.float32)[:, :N_SAMPLES]) for c in data.clips])


@torch.no_grad()
def reconstruction_error(model, x0: torch.Tensor, shift: int = 0, steps: int = 10) -> float:
    """Mean error of clip i decoded from clip (i + shift)'s latent (shift 0: its own), noise seeded by i."""
    latents, n = model.encode(x0), len(x0)
    return float(np.mean([logmel_error(model.decode(latents[(i + shift) % n][None], steps,
                                                    torch.Generator().manual_seed(i))[0, 0], x0[i, 0])
                          for i in range(n)]))


@torch.no_grad()
def denoising_error(model, x0: torch.Tensor, latents: torch.Tensor, t: float = 0.5) -> float:
    """MSE of the one-step x0 estimate from x0 noised to t (noise seeded 0), given `latents`."""
    from generators.archisound import alpha_sigma

    alpha, sigma = alpha_sigma(torch.tensor(t))
    x_t = alpha * x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    v = model(x_t, torch.full((len(x0),), t), latent=latents)
    return float(((alpha * x_t - sigma * v - x0) ** 2).mean())


def main(argv: list[str] | None = None) -> None:
    from bench.core.synthetic import synthetic_dataset
    from bench.training.generator import TrainSettings, parse_overrides, train_generator
    from generators.trainable import get_trainable, model_for_generator

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--crop", type=float, default=0.25, help="training crop in seconds")
    parser.add_argument("--config", nargs="*", help="tiny-config overrides KEY=VALUE")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = synthetic_dataset(8, 8000, 0.5, seed=1)
    x0 = clips(data)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = train_generator("archisound-dmae", data, Path(out), TrainSettings(
            steps=args.steps, every=args.steps, batch_size=args.batch_size, lr=args.lr),
            overrides={"duration_s": args.crop, **parse_overrides(args.config)}, progress=False, log=lambda *a: None)
        seconds = time.perf_counter() - start
        untrained = get_trainable("archisound-dmae").build(run.config, 0).eval()  # the trained run's start
        model, _, _ = model_for_generator("archisound-dmae", str(run.checkpoints[-1]))
    own, swapped = reconstruction_error(model, x0), reconstruction_error(model, x0, 1)
    n = len(x0)
    print(f"training: {args.steps} steps in {seconds:.1f} s, loss {np.mean(run.losses[:5]):.3f} (first 5) -> "
          f"{np.mean(run.losses[-10:]):.3f} (last 10)")
    print(f"reconstruction error, own latent:        {own:.3f}")
    print(f"reconstruction error, another's latent:  {swapped:.3f}   (own / another's = {own / swapped:.3f})")
    print(f"reconstruction error, untrained decoder: {reconstruction_error(untrained, x0):.3f}")
    print(f"reconstruction error, silence:           "
          f"{np.mean([logmel_error(torch.zeros_like(x), x) for x in x0[:, 0]]):.3f}")
    print(f"reconstruction error, another clip:      "
          f"{np.mean([logmel_error(x0[(i + 1) % n, 0], x0[i, 0]) for i in range(n)]):.3f}")
    with torch.no_grad():
        latents = model.encode(x0)
    print(f"denoising error at t=0.5, own latent {denoising_error(model, x0, latents):.4f}, another's "
          f"{denoising_error(model, x0, latents.roll(-1, 0)):.4f}, zeros "
          f"{denoising_error(model, x0, torch.zeros_like(latents)):.4f} (clips' mean square "
          f"{float(x0.pow(2).mean()):.4f})")


if __name__ == "__main__":
    main()
