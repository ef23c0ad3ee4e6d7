"""Learning-rate schedules a trainable's config can ask for (config key "lr_schedule"), stepped by the loop.

- {"name": "warmup-plateau", ...}: the Diffsound authors' ReduceLROnPlateauWithWarmup (their
  Diffsound/sound_synthesis/engine/lr_scheduler.py, configured in Diffsound/configs/caps.yaml): the rate
  rises linearly from the base learning rate to `warmup_lr` over `warmup_steps` steps, then is multiplied by
  `factor` (never below `min_lr`) whenever the training loss has not fallen below (1 - `threshold`) x its
  best for more than `patience` steps. It reads every step's loss, so its state is kept in checkpoints.
"""
from __future__ import annotations

from bench.core.errors import ConfigError

_KEYS = {"name", "warmup_steps", "warmup_lr", "factor", "patience", "min_lr", "threshold"}


class WarmupPlateau:
    def __init__(self, spec: dict, base_lr: float):
        unknown, missing = set(spec) - _KEYS, _KEYS - set(spec)
        if unknown or missing:
            raise ConfigError(f"config lr_schedule {spec!r}: keys must be exactly {sorted(_KEYS)}"
                              + (f"; unknown {sorted(unknown)}" if unknown else "")
                              + (f"; missing {sorted(missing)}" if missing else ""))
        self.spec = dict(spec)
        self.lr = float(base_lr)
        self.step_up = (float(spec["warmup_lr"]) - self.lr) / max(1, int(spec["warmup_steps"]))
        self.steps, self.best, self.bad = 0, float("inf"), 0

    def lr_at(self, step: int) -> float:
        return self.lr

    def observe(self, loss: float) -> None:
        """After a step: the rate for the next one."""
        s = self.spec
        self.steps += 1
        if self.steps <= int(s["warmup_steps"]):
            self.lr = max(self.lr + self.step_up, float(s["min_lr"]))
            return
        if loss < self.best * (1.0 - float(s["threshold"])):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad > int(s["patience"]):
            self.lr = max(self.lr * float(s["factor"]), float(s["min_lr"]))
            self.bad = 0

    def state_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.steps, self.best, self.bad = (float(state["lr"]), int(state["steps"]), float(state["best"]),
                                                    int(state["bad"]))


def build_lr_schedule(config: dict, base_lr: float) -> WarmupPlateau | None:
    spec = config.get("lr_schedule")
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("name") != "warmup-plateau":
        raise ConfigError(f"config lr_schedule {spec!r}: the known schedule is "
                          "{\"name\": \"warmup-plateau\", warmup_steps, warmup_lr, factor, patience, min_lr, threshold}")
    return WarmupPlateau(spec, base_lr)
