"""Check everything a suite needs before any work, and report every problem at once.

Run by `bench run` before training, generation or scoring: backbone weights and tokenizers (from the
backbones' declared needs; downloaded here when downloads are allowed), generator checkpoints (files,
folders, hub repos in the local HF cache, importable factories), folders of audio that do not cover the
prompt set (a generator's own preflight hook), and paired metrics whose ids cannot pair. Nothing is
built or decoded, so a broken suite fails in seconds instead of after hours of generation.
"""
from __future__ import annotations

import functools
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import weights as weights_registry
from bench.core.errors import BenchError, CheckpointError, ConfigError
from generators.base import PreflightQuery, generator_traits, import_factory, is_factory_path
from metrics.backbones.base import WeightsChoice, backbone_needs
from metrics.inputs import pair_ids
from metrics.registry import get_metric


class PreflightError(ConfigError):
    """The suite cannot run as configured; the message lists every problem found."""


@dataclass
class PreflightReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def raise_if_problems(self, what: str) -> None:
        if self.problems:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            raise PreflightError(f"{what}: {len(self.problems)} problem(s) found before any work was done:\n{lines}")


def _allow_download(choice: WeightsChoice) -> bool:
    return choice.allow_download if choice.allow_download is not None else not weights_registry.offline()


def check_weights_card(name: str, choice: WeightsChoice) -> str | None:
    """None when the weights file is at hand (or was just downloaded), else what is missing and how to fix it."""
    local = choice.local_file(name)
    if local is not None:
        return None if Path(local).expanduser().is_file() else f"--checkpoint {name}={local}: no such file"
    card = weights_registry.get_card(name)
    if (weights_registry.weights_dir(choice.weights_root) / card.filename).is_file():
        return None
    if not _allow_download(choice):
        return weights_registry.missing_message(card, choice.weights_root, f"offline mode "
                                                f"({weights_registry.OFFLINE_ENV}=1 or --offline)")
    try:
        weights_registry.resolve(name, choice.weights_root, allow_download=True)
    except CheckpointError as exc:
        return str(exc)
    return None


@functools.cache
def _hub_reachable() -> bool:
    """One quick probe: huggingface_hub retries an unreachable Hub for about 20 s per file."""
    from huggingface_hub.constants import ENDPOINT

    try:
        urllib.request.urlopen(urllib.request.Request(ENDPOINT, method="HEAD"), timeout=5)
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError):
        return False
    return True


def check_hf_file(repo: str, filename: str, allow_download: bool) -> str | None:
    """None when the Hugging Face cache has repo/filename (or it was just downloaded), else the problem."""
    import huggingface_hub

    found = huggingface_hub.try_to_load_from_cache(repo, filename)
    if isinstance(found, str) and Path(found).is_file():
        return None
    reason = "downloads are off (HF_HUB_OFFLINE / BENCH_OFFLINE / --offline)"
    if allow_download and not _hub_reachable():
        reason = "the Hugging Face Hub is unreachable from here"
    elif allow_download:
        try:
            huggingface_hub.hf_hub_download(repo, filename)
            return None
        except Exception as exc:  # network, auth and missing-file errors of huggingface_hub alike
            reason = f"download failed: {type(exc).__name__}: {exc}"
    return (f"{filename} of the Hugging Face repo {repo} is not in the HF cache ({reason}); fetch it once with "
            f"network access: `hf download {repo} {filename}`, or point HF_HOME at a cache that has it")


def check_backbones(metric_ids: list[str], choice: WeightsChoice, trained_here=()) -> list[str]:
    """Every weights file and tokenizer the metrics' backbones read; `trained_here`: backbones the suite
    trains itself ([evaluators]), which need nothing published."""
    problems: list[str] = []
    seen: set = set()
    for metric_id in metric_ids:
        backbone = get_metric(metric_id).protocol.backbone
        if backbone in trained_here:
            continue
        needs = backbone_needs(backbone, choice)
        for name in needs.weights:
            if ("w", name) not in seen:
                seen.add(("w", name))
                problem = check_weights_card(name, choice)
                if problem:
                    problems.append(f"{metric_id} (backbone {backbone}): {problem}")
        for repo, filename in needs.hf_files:
            if ("hf", repo, filename) not in seen:
                seen.add(("hf", repo, filename))
                problem = check_hf_file(repo, filename, _allow_download(choice))
                if problem:
                    problems.append(f"{metric_id} (backbone {backbone}): {problem}")
    return problems


def check_checkpoint(generator: str, checkpoint: str) -> str | None:
    """A checkpoint that is a path must exist; an hf:// repo must be in the local HF cache."""
    if checkpoint.startswith("training:"):  # trained by the suite itself before generation
        return None
    if checkpoint.startswith("hf://"):
        from generators.diffusers_audio import fetch_instruction, hf_cache_dir
        from huggingface_hub import snapshot_download

        repo = checkpoint[len("hf://"):]
        try:
            snapshot_download(repo, cache_dir=hf_cache_dir(), local_files_only=True)
        except Exception as exc:  # LocalEntryNotFoundError / OSError subclasses
            return (f"generator {generator!r}: {checkpoint} is not in the local HF cache ({type(exc).__name__}); "
                    f"{fetch_instruction(repo)}")
        return None
    if not Path(checkpoint).exists():
        return f"generator {generator!r}: checkpoint {checkpoint} does not exist"
    return None


def check_generators(cells, prompts) -> tuple[list[str], list[str]]:
    problems, warnings = [], []
    groups: dict[tuple, list] = {}
    for cell in cells:
        groups.setdefault((cell.generator, cell.checkpoint, repr(sorted(cell.options.items())),
                           cell.samples_per_prompt), []).append(cell)
    for (name, checkpoint, _, samples), group in groups.items():
        if is_factory_path(name):
            try:
                import_factory(name)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
        if checkpoint is not None:
            problem = check_checkpoint(name, checkpoint)
            if problem:
                problems.append(problem)
                continue
        hook = generator_traits(name).preflight
        if hook is not None:
            query = PreflightQuery(checkpoint, group[0].options, tuple(prompts),
                                   tuple(dict.fromkeys(c.seed for c in group)), samples)
            found, notes = hook(query)
            problems += found
            warnings += notes
    return problems, warnings


def check_pairing(metric_ids: list[str], generated_ids: list[str], reference_ids: list[str], policy: str,
                  what: str) -> list[str]:
    """Paired metrics match clips by id: check that the ids pair before anything is embedded."""
    paired = [m for m in metric_ids if get_metric(m).kind == "paired"]
    if not paired:
        return []
    try:
        pair_ids(generated_ids, reference_ids, policy)
    except BenchError as exc:
        return [f"{', '.join(paired)} on {what}: {exc}"]
    return []


def preflight_suite(suite, reference, prompts, choice: WeightsChoice) -> PreflightReport:
    """Every problem of a suite that can be found without doing its work."""
    report = PreflightReport()
    report.problems += check_backbones(suite.metrics, choice, trained_here=set(suite.evaluators))
    found, notes = check_generators(suite.cells, prompts)
    report.problems += found
    report.warnings += notes
    prompt_ids = [p.id for p in prompts]
    reference_ids = [c.id for c in reference.clips]
    report.problems += check_pairing(suite.metrics, prompt_ids, reference_ids, "strict",
                                     f"the prompt set vs the reference {reference.source}")
    return report
