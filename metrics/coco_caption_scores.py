"""COCO caption metrics (BLEU-4, METEOR, ROUGE-L, CIDEr-D, SPICE) of candidate captions against references.

The scorers are pycocoevalcap 1.2's own (its Python BLEU/ROUGE-L/CIDEr-D, its METEOR 1.5 and SPICE 1.0
jars), fed exactly as its COCOEvalCap feeds them: every caption goes through Stanford's PTBTokenizer
(CoreNLP 3.4.1, `-preserveLines -lowerCase`, then COCO's punctuation tokens dropped). Two things are
done here rather than inside pycocoevalcap, because its wrappers write temporary files next to their
jars (site-packages may be read-only) and start one JVM per call:
- tokenization runs the same jar with the same flags on a temporary file of ours, once for all
  candidates and references of a call (and is remembered in-process, so six metrics on one set
  start one tokenizer JVM);
- SPICE runs spice-1.0.jar's main class with the Stanford CoreNLP 3.6.0 jars taken from the weights
  cache (bench/core/weights.py cards `corenlp-3.6.0`, `corenlp-3.6.0-models`), since they cannot be
  shipped with the wheel (pycocoevalcap downloads them into its own folder at first use).
Without Java every metric fails with one message saying what to install; without the CoreNLP jars
SPICE (and SPIDEr) fail with one message naming both files, their URLs and where to put them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.core import weights as weights_registry
from bench.core.errors import BenchError, CheckpointError
from bench.core.extras import require
from bench.core.weights import WeightsCard, register_weights

# pycocoevalcap's PTBTokenizer drops these tokens after tokenizing.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
                          "-", "--", "...", ";"])
SCORERS = ("bleu4", "meteor", "rouge-l", "cider-d", "spice")
JAVA_INSTALL_HINT = ("install a Java runtime (Debian/Ubuntu: apt-get install default-jre-headless; any JRE 8+ "
                     "works) and make sure `java` is on PATH")

_CORENLP_BASE = "https://repo1.maven.org/maven2/edu/stanford/nlp/stanford-corenlp/3.6.0/"
_CORENLP_CITATION = ("Manning et al., The Stanford CoreNLP Natural Language Processing Toolkit, ACL 2014; "
                     "SPICE: Anderson et al., SPICE: Semantic Propositional Image Caption Evaluation, ECCV 2016")
# The same two jars pycocoevalcap's get_stanford_models() extracts from stanford-corenlp-full-2015-12-09.zip,
# taken from Maven Central as single files. No sha256 is published (Maven lists sha1): the observed
# hash is recorded in every SPICE result.
CORENLP_JARS = (
    register_weights(WeightsCard(
        name="corenlp-3.6.0", filename="stanford-corenlp-3.6.0.jar", url=_CORENLP_BASE + "stanford-corenlp-3.6.0.jar",
        backbone="spice", license="GPL-3.0-or-later (Stanford CoreNLP)", citation=_CORENLP_CITATION,
        size_bytes=6_900_000)),
    register_weights(WeightsCard(
        name="corenlp-3.6.0-models", filename="stanford-corenlp-3.6.0-models.jar",
        url=_CORENLP_BASE + "stanford-corenlp-3.6.0-models.jar", backbone="spice",
        license="GPL-3.0-or-later (Stanford CoreNLP)", citation=_CORENLP_CITATION, size_bytes=362_000_000)),
)


class SpiceUnavailable(CheckpointError):
    """SPICE cannot run: its Stanford CoreNLP jars are not in the cache and cannot be fetched."""


def package_dir() -> Path:
    pycocoevalcap = require("pycocoevalcap", "captions", "caption metrics")
    return Path(next(iter(pycocoevalcap.__path__)))


def java() -> str:
    """Path of the `java` executable, or one clear error."""
    found = shutil.which("java")
    if found is None:
        raise BenchError(f"caption metrics run Java programs (PTB tokenizer, METEOR, SPICE) and no `java` is "
                         f"on PATH: {JAVA_INSTALL_HINT}")
    return found


def _run_java(args: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([java(), *args], capture_output=True, **kw)
    except OSError as exc:
        raise BenchError(f"{what}: could not start java ({exc}); {JAVA_INSTALL_HINT}") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")[-2000:] if isinstance(done.stderr, bytes) else str(done.stderr)
        raise BenchError(f"{what} failed (java exit code {done.returncode}): {err.strip()}")
    return done


# ------------------------------------------------------------------------------------ tokenization

@lru_cache(maxsize=64)
def _tokenize_cached(sentences: tuple[str, ...]) -> tuple[str, ...]:
    jar = package_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    with tempfile.TemporaryDirectory(prefix="bench-ptb-") as tmp:
        path = Path(tmp) / "sentences.txt"
        path.write_text("\n".join(s.replace("\n", " ").replace("\r", " ") for s in sentences), encoding="utf-8")
        done = _run_java(["-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                          "-lowerCase", str(path)], "PTB tokenizer")
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) < len(sentences):
        raise BenchError(f"PTB tokenizer returned {len(lines)} lines for {len(sentences)} captions")
    return tuple(" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
                 for line in lines[:len(sentences)])


def ptb_tokenize(sentences: list[str]) -> list[str]:
    """pycocoevalcap's PTB tokenization of each sentence (one JVM for the whole list)."""
    if not sentences:
        return []
    return list(_tokenize_cached(tuple(sentences)))


# ------------------------------------------------------------------------------------------ scores

@dataclass
class CaptionScore:
    name: str
    corpus: float
    per_clip: list[float]
    details: dict


def _check(candidates: list[str], references: list[list[str]]) -> None:
    if len(candidates) != len(references):
        raise BenchError(f"{len(candidates)} candidate captions but {len(references)} reference lists")
    if not candidates:
        raise BenchError("caption metrics need at least one candidate caption")
    empty = [i for i, refs in enumerate(references) if not refs or not all(isinstance(r, str) and r.strip()
                                                                           for r in refs)]
    if empty:
        raise BenchError(f"{len(empty)} item(s) have no (or an empty) reference caption; first: item {empty[0]}")


def tokenized(candidates: list[str], references: list[list[str]]) -> tuple[dict, dict]:
    """(gts, res) dicts keyed by item index, PTB-tokenized in one batch, as COCOEvalCap builds them."""
    _check(candidates, references)
    flat = list(candidates) + [r for refs in references for r in refs]
    toks = ptb_tokenize(flat)
    res = {i: [toks[i]] for i in range(len(candidates))}
    gts, k = {}, len(candidates)
    for i, refs in enumerate(references):
        gts[i] = toks[k:k + len(refs)]
        k += len(refs)
    return gts, res


def coco_scores(candidates: list[str], references: list[list[str]], which=SCORERS,
                cache_root: Path | None = None, allow_download: bool | None = None) -> dict[str, CaptionScore]:
    """Corpus and per-clip scores of `candidates[i]` against `references[i]` for each metric in `which`."""
    unknown = sorted(set(which) - set(SCORERS))
    if unknown:
        raise BenchError(f"unknown caption scorer(s) {unknown}; choose from {', '.join(SCORERS)}")
    java()  # one clear error before any work
    gts, res = tokenized(candidates, references)
    out = {}
    if "bleu4" in which:
        from pycocoevalcap.bleu.bleu import Bleu

        corpus, per = Bleu(4).compute_score(gts, res, verbose=0)
        out["bleu4"] = CaptionScore("bleu4", float(corpus[3]), [float(v) for v in per[3]],
                                    {"bleu1-3": [float(v) for v in corpus[:3]],
                                     "corpus": "corpus-level BLEU-4 (clipped n-gram counts pooled over items)"})
    if "meteor" in which:
        out["meteor"] = _meteor(gts, res)
    if "rouge-l" in which:
        from pycocoevalcap.rouge.rouge import Rouge

        corpus, per = Rouge().compute_score(gts, res)
        out["rouge-l"] = CaptionScore("rouge-l", float(corpus), [float(v) for v in per],
                                      {"corpus": "mean of per-item ROUGE-L (beta 1.2)"})
    if "cider-d" in which:
        from pycocoevalcap.cider.cider import Cider

        corpus, per = Cider().compute_score(gts, res)
        out["cider-d"] = CaptionScore("cider-d", float(corpus), [float(v) for v in per],
                                      {"corpus": "mean of per-item CIDEr-D", "n": 4, "sigma": 6.0, "scale": 10.0,
                                       "idf": "document frequencies over the evaluated items' references"})
    if "spice" in which:
        out["spice"] = spice(gts, res, cache_root, allow_download)
    return out


def _meteor(gts: dict, res: dict) -> CaptionScore:
    """pycocoevalcap's Meteor wrapper starts its JVM in its own folder; closed here after one call."""
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
    except OSError as exc:
        raise BenchError(f"METEOR: could not start java ({exc}); {JAVA_INSTALL_HINT}") from exc
    try:
        corpus, per = scorer.compute_score(gts, res)
    except (ValueError, BrokenPipeError) as exc:
        err = scorer.meteor_p.stderr.read().decode(errors="replace")[-2000:] if scorer.meteor_p.stderr else ""
        raise BenchError(f"METEOR 1.5 failed: {exc} {err.strip()}") from exc
    finally:
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
    return CaptionScore("meteor", float(corpus), [float(v) for v in per],
                        {"corpus": "METEOR 1.5 over pooled statistics (-l en -norm)"})


# ------------------------------------------------------------------------------------------- SPICE

def spice_jars(cache_root: Path | None = None, allow_download: bool | None = None) -> list[weights_registry.ResolvedWeights]:
    """Both CoreNLP 3.6.0 jars from the weights cache (downloaded when allowed), or SpiceUnavailable."""
    from bench.core.cache import default_cache_root

    root = Path(cache_root) if cache_root is not None else default_cache_root()
    resolved, problems = [], []
    for card in CORENLP_JARS:
        try:
            resolved.append(weights_registry.resolve(card.name, root, allow_download=allow_download))
        except CheckpointError as exc:
            problems.append((card, exc))
    if problems:
        listed = "; ".join(f"{card.filename} from {card.url} -> {weights_registry.weights_dir(root) / card.filename}"
                           for card, _ in problems)
        why = ("downloads are off" if allow_download is False or (allow_download is None and weights_registry.offline())
               else "the download failed")
        raise SpiceUnavailable(
            f"SPICE needs the Stanford CoreNLP 3.6.0 jars, and {len(problems)} of 2 are not in the weights cache and {why} "
            f"({listed}). Fetch them with `bench weights fetch corenlp-3.6.0 corenlp-3.6.0-models` (network "
            "access), or download the URLs and put the files at the paths shown. SPIDEr needs SPICE; CIDEr-D, "
            f"BLEU, METEOR and ROUGE-L do not.")
    return resolved


def spice_command(jars: list[Path], in_file: Path, out_file: Path, cache_dir: Path) -> list[str]:
    """spice-1.0.jar's main class on a classpath of pycocoevalcap's bundled libraries plus the CoreNLP jars
    (the jar's manifest expects them in pycocoevalcap/spice/lib/; ours live in the weights cache)."""
    spice_dir = package_dir() / "spice"
    classpath = [spice_dir / "spice-1.0.jar", *jars, *sorted((spice_dir / "lib").glob("*.jar"))]
    return ["-Xmx8G", "-cp", os.pathsep.join(str(p) for p in classpath), "edu.anu.spice.SpiceScorer",
            str(in_file), "-cache", str(cache_dir), "-out", str(out_file), "-subset", "-silent"]


def spice(gts: dict, res: dict, cache_root: Path | None = None, allow_download: bool | None = None) -> CaptionScore:
    """SPICE F-score per item (scores.All.f, NaN when undefined) and their mean, as pycocoevalcap's Spice."""
    from bench.core.cache import default_cache_root

    jars = spice_jars(cache_root, allow_download)
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    ids = sorted(gts)
    items = [{"image_id": i, "test": res[i][0], "refs": gts[i]} for i in ids]
    parse_cache = root / "spice-cache"  # SPICE's own LMDB cache of parsed captions
    parse_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-spice-") as tmp:
        in_file, out_file = Path(tmp) / "input.json", Path(tmp) / "output.json"
        in_file.write_text(json.dumps(items))
        _run_java(spice_command([j.path for j in jars], in_file, out_file, parse_cache), "SPICE 1.0")
        try:
            results = json.loads(out_file.read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"SPICE 1.0 wrote no readable result ({exc})") from exc
    by_id = {item["image_id"]: item["scores"] for item in results}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise BenchError(f"SPICE 1.0 returned no score for {len(missing)} item(s) (first: {missing[0]})")
    per = [_float(by_id[i]["All"]["f"]) for i in ids]
    return CaptionScore("spice", float(np.mean(per)), per,
                        {"corpus": "mean of per-item SPICE F-scores",
                         "corenlp_jars": [j.provenance() for j in jars]})


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
