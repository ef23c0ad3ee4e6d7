"""VGGish network with the parameter layout of torchvggish's ``vggish-10086976.pth``.

``forward`` returns the 128-d embedding BEFORE the final ReLU (what both FAD presets use), without
PCA or quantization.
"""

from collections.abc import Mapping
import math
import pickle

import numpy as np
import torch
from torch import nn

from bench.core.errors import CheckpointError

_FEATURE_CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
EMBEDDING_DIM = 128


def _make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 1
    for v in _FEATURE_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """VGGish up to the pre-activation 128-d embedding."""

    def __init__(self):
        super().__init__()
        self.features = _make_features()
        # A [N,1,96,64] input leaves the features as [N,512,6,4].
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # The weights were ported from TF, which flattens channels-last ([N,H,W,C]); the same two
        # transposes as torchvggish keep the flattened order identical.
        x = torch.transpose(x, 1, 3)
        x = torch.transpose(x, 1, 2)
        x = x.contiguous().view(x.size(0), -1)
        return self.embeddings(x)


def _empty_model() -> VGGish:
    # Built on the meta device: no memory, and the default init never draws from the global RNG.
    with torch.device("meta"):
        return VGGish()


EXPECTED_SHAPES: dict[str, tuple] = {k: tuple(v.shape) for k, v in _empty_model().state_dict().items()}


def _check_state_dict(state_dict, source: str) -> None:
    """Raise CheckpointError unless ``state_dict`` has exactly the expected keys and shapes."""
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{source}: not a VGGish state dict (expected a dict of tensors, "
                              f"got {type(state_dict).__name__}); use torchvggish's vggish-10086976.pth")
    for key in sorted(set(EXPECTED_SHAPES) | set(state_dict)):
        if key not in state_dict:
            problem = f"missing key '{key}'"
        elif key not in EXPECTED_SHAPES:
            problem = f"unexpected key '{key}'"
        elif tuple(state_dict[key].shape) != EXPECTED_SHAPES[key]:
            problem = (f"key '{key}' has shape {tuple(state_dict[key].shape)}, "
                       f"expected {EXPECTED_SHAPES[key]}")
        else:
            continue
        raise CheckpointError(f"{source}: does not fit VGGish: {problem}{_prefix_hint(state_dict)}")


def _prefix_hint(state_dict: Mapping) -> str:
    # Wrappers such as DataParallel save 'module.features.0.weight'; say so rather than strip silently.
    prefixes = {k.split(".", 1)[0] + "." for k in state_dict
                if k not in EXPECTED_SHAPES and "." in k and k.split(".", 1)[1] in EXPECTED_SHAPES}
    if not prefixes:
        return ""
    return f" (keys look prefixed with {', '.join(repr(p) for p in sorted(prefixes))}; strip the prefix)"


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """Load and validate a VGGish checkpoint (tensors only: never unpickles arbitrary objects)."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbage/foreign files
        # torch's unpickling message advises weights_only=False, which we never want to suggest.
        detail = ("not a tensors-only file" if isinstance(exc, pickle.UnpicklingError)
                  else (str(exc).splitlines() or [""])[0])
        raise CheckpointError(f"cannot read VGGish checkpoint {path} ({type(exc).__name__}: {detail}); "
                              f"it is missing or corrupt, re-fetch it") from exc
    _check_state_dict(state_dict, str(path))
    return dict(state_dict)


def _seeded_init_(model: VGGish, seed: int) -> None:
    # He-uniform weights keep activations at a usable scale through the ReLUs, so the untrained
    # backbone still gives non-degenerate embeddings; biases use PyTorch's default 1/sqrt(fan_in).
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.uniform_(-math.sqrt(6.0 / fan_in), math.sqrt(6.0 / fan_in), generator=generator)
                module.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in), generator=generator)


def build_vggish(state_dict: Mapping | None = None, seed: int | None = None) -> VGGish:
    """VGGish in eval mode, from a state dict (strict) or, for tests/smoke runs, seeded random weights."""
    if (state_dict is None) == (seed is None):
        raise ValueError("build_vggish needs exactly one of state_dict or seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    model = _empty_model().to_empty(device="cpu")
    if state_dict is not None:
        _check_state_dict(state_dict, "state dict")
        model.load_state_dict(state_dict, strict=True)
    else:
        _seeded_init_(model, seed)
    return model.eval()


def embed(model: VGGish, examples, batch_size: int = 64) -> np.ndarray:
    """Float32 ``[N, 128]`` embeddings of ``[N, 1, 96, 64]`` examples, computed in batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = torch.as_tensor(examples, dtype=torch.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 96, 64):
        raise ValueError(f"expected examples of shape [N, 1, 96, 64], got {tuple(x.shape)}")
    param = next(model.parameters())
    out = [np.zeros((0, EMBEDDING_DIM), dtype=np.float32)]
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            batch = x[start:start + batch_size].to(param.device, param.dtype)
            out.append(model(batch).float().cpu().numpy())
    return np.concatenate(out)
