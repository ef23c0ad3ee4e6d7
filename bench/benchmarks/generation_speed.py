"""Generation speed: real-time factor (wall seconds of compute per second of audio; < 1 is faster than
real time) of any registered generator, swept over steps, sample rates, generator options, prompts per
call and samples per prompt, on this machine's CPU.

    python -m bench.benchmarks.generation_speed --generator archisound --steps 5 10 25 --batch-sizes 1 4
    python -m bench.benchmarks.generation_speed --generator archisound --checkpoint runs/a/step-000200.pt
    python -m bench.benchmarks.generation_speed --generator dac-resynthesis --checkpoint untrained \\
        --steps none --option n_codebooks=1,9
    python -m bench.benchmarks.generation_speed --generator diffsound --timesteps 100 --steps none --stride 1 2 4
    python -m bench.benchmarks.generation_speed --preset waveform-and-codec   # discodiff, archisound, dac-resynthesis
    python -m bench.benchmarks.generation_speed --preset latent-and-discrete  # audioldm2, srcgaudio per rate, diffsound stride

Without --checkpoint a generator runs its tiny config with seeded random weights and is labelled
untrained (speed does not depend on the weights' values, but a tiny config is not the full-size model).
Generators that read reference audio (upsampler, vocoder, resynthesis, ...) get the built-in synthetic
set as reference. Each configuration gets one warm-up call, then `--repeats` timed calls; RTF is from
the fastest call (the least disturbed by other load on a shared machine), the median is shown too.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch

from bench.core.synthetic import synthetic_dataset
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator

# the reference generators' measurement tables: waveform / codec-latent diffusion (ArchiSound, DiscoDiff, DAC) and
# mel-latent / discrete diffusion (AudioLDM 2, SRC-gAudio, Diffsound)
PRESETS = {
    "waveform-and-codec": [
        ["--generator", "discodiff", "--steps", "5", "25", "50", "--samples-per-prompt", "1", "4",
         "--guidance", "2.0"],
        ["--generator", "archisound", "--steps", "5", "25", "--batch-sizes", "1", "4"],
        ["--generator", "dac-resynthesis", "--checkpoint", "untrained", "--steps", "none",
         "--option", "n_codebooks=1,9"],
    ],
    "latent-and-discrete": [
        ["--generator", "audioldm2", "--steps", "10", "25", "50", "--guidance", "3.5", "--batch-sizes", "2"],
        ["--generator", "srcgaudio", "--sample-rates", "16000", "48000", "--steps", "10", "50",
         "--guidance", "3.0", "--batch-sizes", "2"],
        ["--generator", "diffsound", "--timesteps", "100", "--steps", "none", "--stride", "1", "2", "4", "7", "10",
         "--batch-sizes", "2"],
    ],
}
# flags that describe one table; a preset sets these, the caller's other flags apply to every table
TABLE_FLAGS = ("generator", "checkpoint", "steps", "batch_sizes", "samples_per_prompt", "sample_rates",
               "guidance", "option", "stride", "timesteps")


def parse_option(text: str) -> tuple[str, list]:
    """'key=v1,v2' -> (key, [v1, v2]) with ints and floats parsed, other values kept as strings."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise SystemExit(f"--option {text!r}: expected KEY=VALUE[,VALUE...], e.g. n_codebooks=1,9")

    def value(v: str):
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v

    return key, [value(v) for v in values.split(",")]


def load_generator(name: str, checkpoint: str | None, timesteps: int | None, context: GeneratorContext):
    if timesteps is None:
        return build_generator(name, checkpoint, context)
    if name != "diffsound" or checkpoint is not None:
        raise SystemExit("--timesteps rebuilds the untrained tiny diffsound with T steps; it takes no "
                         "--checkpoint and no other generator")
    from generators.diffsound import DiffsoundGenerator
    from generators.trainable import get_trainable

    trainable = get_trainable("diffsound")
    config = {**trainable.default_config("tiny"), "timesteps": timesteps}
    info = {"untrained": True, "label": f"untrained-tiny-T{timesteps}", "checkpoint": None, "sha256": None,
            "step": 0}
    return DiffsoundGenerator(trainable.build(config, 0).eval(), config, info, context)


def time_calls(gen, request: GenerationRequest, repeats: int) -> list[float]:
    gen.generate(request)  # warm-up: first-call kernel setup and caches are not generation speed
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gen.generate(request)
        times.append(time.perf_counter() - t0)
    return times


def measure(args) -> list[dict]:
    batch_sizes = args.batch_sizes
    reference = synthetic_dataset(n_clips=max(batch_sizes), sample_rate=16000, duration_s=args.duration, seed=0)
    gen = load_generator(args.generator, args.checkpoint, args.timesteps, GeneratorContext(reference))
    steps = [None if s == "none" else int(s) for s in args.steps]
    if any(s is not None for s in steps) and not gen.uses_steps:
        raise SystemExit(f"generator {args.generator!r} has no sampling steps; pass --steps none")
    rates = args.sample_rates or [gen.native_sample_rates[0] if gen.native_sample_rates else 16000]
    sweeps = dict(parse_option(o) for o in args.option)
    if args.stride:
        sweeps["time_stride"] = args.stride
    keys = list(sweeps)
    rows = []
    for rate, n_steps, values, batch, per_prompt in itertools.product(
            rates, steps, itertools.product(*sweeps.values()), batch_sizes, args.samples_per_prompt):
        options = dict(zip(keys, values))
        prompts = tuple(Prompt(c.id, c.caption, i) for i, c in enumerate(reference.clips[:batch]))
        request = GenerationRequest(prompts=prompts, seed=0, duration_s=args.duration, sample_rate=rate,
                                    steps=n_steps, guidance=args.guidance, samples_per_prompt=per_prompt,
                                    options=options)
        times = time_calls(gen, request, args.repeats)
        audio_s = batch * per_prompt * args.duration
        rows.append({"generator": args.generator, "version": gen.version, "sample_rate": rate, "steps": n_steps,
                     "guidance": args.guidance, "options": options, "prompts": batch,
                     "samples_per_prompt": per_prompt, "duration_s": args.duration,
                     "seconds_best": round(min(times), 4), "seconds_median": round(statistics.median(times), 4),
                     "rtf": round(min(times) / audio_s, 4)})
    if args.stride:  # Diffsound's Table VI: speedup of each time stride over the first one listed
        first = {}
        for r in rows:
            key = (r["sample_rate"], r["prompts"], r["samples_per_prompt"])
            first.setdefault(key, r["seconds_best"])
            r["speedup_vs_first_stride"] = round(first[key] / r["seconds_best"], 2)
    return rows


def print_table(args, rows: list[dict]) -> None:
    print(f"\n{args.generator} ({rows[0]['version']}), {args.duration} s per sample, torch threads {args.threads}, "
          f"best and median of {args.repeats}")
    cols = ["sample_rate", "steps", "guidance", "options", "prompts", "samples_per_prompt", "seconds_best",
            "seconds_median", "rtf"] + (["speedup_vs_first_stride"] if args.stride else [])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        cells = [", ".join(f"{k}={v}" for k, v in r[c].items()) or "-" if c == "options" else r[c] for c in cols]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="run a set of reference-generator tables (ignores the "
                   "per-table flags below; --duration, --repeats, --threads, --json still apply)")
    p.add_argument("--generator", default="archisound", help="registered generator name")
    p.add_argument("--checkpoint", help="checkpoint file or name (default: the untrained tiny config)")
    p.add_argument("--steps", nargs="+", default=["5", "10", "25"], help="sampler steps ('none': the default)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1], help="prompts per generate() call")
    p.add_argument("--samples-per-prompt", nargs="+", type=int, default=[1])
    p.add_argument("--sample-rates", nargs="+", type=int, help="requested rates (default: the native rate)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the generator's)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=V1[,V2...]",
                   help="generator option to sweep, e.g. n_codebooks=1,9 (repeatable: all combinations)")
    p.add_argument("--stride", nargs="+", type=int, help="diffsound: time strides to sweep, with the speedup "
                   "over the first (option time_stride; use --steps none)")
    p.add_argument("--timesteps", type=int, help="diffsound: T diffusion steps of the untrained tiny model "
                   "(the paper's T is 100)")
    p.add_argument("--duration", type=float, default=1.0, help="seconds of audio per sample")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of tables")
    return p


def main(argv=None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tables = [args]
    if args.preset:  # each preset table: its own flags over the caller's shared ones
        shared = {k: v for k, v in vars(args).items() if k not in TABLE_FLAGS}
        tables = [parser.parse_args(flags, namespace=argparse.Namespace(**shared)) for flags in PRESETS[args.preset]]
    if not args.json:
        print(f"torch {torch.__version__}, {args.threads} thread(s), RTF = best wall s / audio s")
    everything = []
    for table in tables:
        rows = measure(table)
        everything += rows
        if not args.json:
            print_table(table, rows)
    if args.json:
        print(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
