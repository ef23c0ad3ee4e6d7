"""`command`: the user's own inference command as a generator.

For each batch the harness writes the prompts as JSONL (id, text, prompt_index, and the seed of each
sample, derived like every generator's per-sample seed), runs `options.command` with the placeholders
{checkpoint} {prompts_jsonl} {out_dir} {seed} {steps} {guidance} {sample_rate} {duration_s} filled in,
then collects {out_dir} exactly like the `files` generator (`options.pattern`, default "{prompt_id}").
The command is split like a shell would (shlex) and run without a shell unless `options.shell = true`;
`options.timeout_s` bounds it (default 3600). Its stdout and stderr are kept in the cell's results folder
(logs/); a failing command fails its cell with the last lines of its stderr. What it returns is
resampled to the requested rate when it is not already there (recorded). Outputs are cached like any
generator's, keyed by the command, the checkpoint's sha256 (file) or fingerprint (folder), and the request.
"""
from __future__ import annotations

import json
import shlex
import shutil
import string
import subprocess
import tempfile
from pathlib import Path

from bench.core.errors import BenchError, CheckpointError, ConfigError
from bench.core.weights import folder_fingerprint, sha256_file
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, GeneratorTraits, PreflightQuery,
                             at_requested_rate, check_request, register_generator, sample_seed)
from generators.files import DEFAULT_PATTERN, check_options, listing, match, open_checkpoint

PLACEHOLDERS = ("checkpoint", "prompts_jsonl", "out_dir", "seed", "steps", "guidance", "sample_rate", "duration_s")
OPTIONS = ("command", "shell", "timeout_s", "pattern")
DEFAULT_TIMEOUT_S = 3600.0
STDERR_LINES = 20  # lines of a failing command's stderr quoted in the error


def _command(options: dict) -> tuple[str, set[str]]:
    command = options.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ConfigError("generator 'command' needs options.command, e.g. \"python infer.py --ckpt {checkpoint} "
                          "--prompts {prompts_jsonl} --out {out_dir} --seed {seed}\"")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(command) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"command: options.command is not a valid template ({exc}): {command!r}") from exc
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        raise ConfigError(f"command: unknown placeholder(s) {unknown} in options.command; known: {list(PLACEHOLDERS)}")
    if "out_dir" not in fields:
        raise ConfigError("command: options.command must write its audio to {out_dir}")
    return command, fields


def _executable_problem(options: dict) -> str | None:
    command, _ = _command(options)
    if options.get("shell"):
        return None
    program = shlex.split(command)[0]
    if shutil.which(program) is None and not Path(program).is_file():
        return f"command: program {program!r} of options.command is not on PATH nor a file"
    return None


def preflight(query: PreflightQuery) -> tuple[list[str], list[str]]:
    try:
        _, fields = _command(query.options)
        problem = _executable_problem(query.options)
    except ConfigError as exc:
        return [str(exc)], []
    problems = [problem] if problem else []
    if "checkpoint" in fields and query.checkpoint is None:
        problems.append("command: options.command uses {checkpoint} but the generator has no `checkpoints`")
    return problems, []


def _checkpoint_id(checkpoint: str | None) -> str | None:
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    if path.is_dir():
        return folder_fingerprint(path)
    if path.is_file():
        return sha256_file(path)
    raise CheckpointError(f"command checkpoint {checkpoint} does not exist")


class CommandGenerator:
    name = "command"
    native_sample_rates = None
    max_duration_s = None
    uses_steps = True
    uses_guidance = True
    options = OPTIONS

    def __init__(self, checkpoint: str | None, context: GeneratorContext):
        self.checkpoint = checkpoint
        self.context = context
        self.checkpoint_sha256 = _checkpoint_id(checkpoint)
        self.version = "1"

    def _argv(self, request: GenerationRequest, values: dict) -> tuple[list[str] | str, bool]:
        command, fields = _command(request.options)
        for name in ("steps", "guidance"):
            if getattr(request, name) is not None and name not in fields:
                raise ConfigError(f"command: {name} = {getattr(request, name)} was asked for but options.command has "
                                  f"no {{{name}}} placeholder; add it or remove {name}")
        missing = sorted(f for f in fields if values.get(f) is None)
        if missing:
            raise ConfigError(f"command: options.command uses {missing} but the cell has no value for them")
        if request.options.get("shell", False):
            return command.format(**{k: shlex.quote(str(v)) for k, v in values.items() if v is not None}), True
        return [part.format(**{k: str(v) for k, v in values.items()}) for part in shlex.split(command)], False

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        pattern, _ = check_options({"pattern": request.options.get("pattern", DEFAULT_PATTERN)},
                                   request.samples_per_prompt, (None,))
        timeout = float(request.options.get("timeout_s", DEFAULT_TIMEOUT_S))
        log_dir = Path(self.context.log_dir or tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        batch = f"batch-{request.prompts[0].index:06d}"
        with tempfile.TemporaryDirectory(prefix="bench-command-") as tmp:
            prompts_jsonl, out_dir = Path(tmp) / "prompts.jsonl", Path(tmp) / "out"
            out_dir.mkdir()
            prompts_jsonl.write_text("".join(json.dumps({
                "id": p.id, "text": p.text, "prompt_index": p.index,
                "sample_seeds": [sample_seed(request.seed, p.index, k) for k in range(request.samples_per_prompt)],
            }) + "\n" for p in request.prompts))
            values = {"checkpoint": self.checkpoint, "prompts_jsonl": prompts_jsonl, "out_dir": out_dir,
                      "seed": request.seed, "steps": request.steps, "guidance": request.guidance,
                      "sample_rate": request.sample_rate, "duration_s": request.duration_s}
            argv, shell = self._argv(request, values)
            stdout, stderr = log_dir / f"{batch}.stdout.log", log_dir / f"{batch}.stderr.log"
            with open(stdout, "wb") as out, open(stderr, "wb") as err:
                try:
                    done = subprocess.run(argv, shell=shell, stdout=out, stderr=err, timeout=timeout,
                                          cwd=self.context.work_dir)
                except subprocess.TimeoutExpired:
                    raise BenchError(f"command timed out after {timeout:g} s (options.timeout_s); "
                                     f"{_tail(stderr)}") from None
                except OSError as exc:
                    raise BenchError(f"command could not start: {exc}") from exc
            if done.returncode != 0:
                raise BenchError(f"command exited with status {done.returncode}; {_tail(stderr)}")
            try:
                clips = open_checkpoint(str(out_dir))
            except CheckpointError:
                raise BenchError(f"command wrote no audio to {{out_dir}}; {_tail(stderr)}") from None
            found, missing = match(clips, pattern, request.prompts, request.samples_per_prompt, (None,))
            if missing:
                raise BenchError(f"command wrote no audio for {len(missing)} prompt(s) (pattern {pattern!r}): "
                                 f"{listing(missing)}")
            index = {p.id: p.index for p in request.prompts}
            out = []
            for (prompt_id, k, _), clip in found.items():
                wave, rate = clips.load(clip)
                wave, rate_meta = at_requested_rate(wave, rate, request, self.context.resampler)
                meta = {"generator": self.name, "generator_version": self.version, "checkpoint": self.checkpoint,
                        "checkpoint_sha256": self.checkpoint_sha256, "command": request.options["command"],
                        "seed": request.seed, "prompt_index": index[prompt_id], "sample_index": k,
                        "steps": request.steps, "guidance": request.guidance, "stdout_log": str(stdout),
                        "stderr_log": str(stderr), **rate_meta}
                out.append(GeneratedAudio(prompt_id, k, wave, rate_meta["output_sample_rate"], meta))
        return out


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()[-STDERR_LINES:]
    shown = "\n".join(f"    {line}" for line in lines) if lines else "    (empty)"
    return f"last lines of its stderr ({path}):\n{shown}"


@register_generator("command", "the user's inference command (options.command with {checkpoint} {prompts_jsonl} "
                    "{out_dir} ...); its output folder is read like `files`",
                    GeneratorTraits(preflight=preflight, fingerprint=_checkpoint_id))
def _command_generator(checkpoint: str | None, context: GeneratorContext) -> CommandGenerator:
    return CommandGenerator(checkpoint, context)
