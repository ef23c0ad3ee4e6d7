"""VGGish as a registered backbone: torchvggish's checkpoint, or seeded random weights (untrained)."""
from __future__ import annotations

from bench.core import weights as weights_registry
from metrics.backbones import vggish
from metrics.backbones.base import Backbone, WeightsChoice, pick_device, register_backbone

# Bump when the architecture or the seeded initialisation changes: untrained cache keys depend on it.
UNTRAINED_INIT = "vggish-seeded-init-v1"

weights_registry.register_weights(weights_registry.WeightsCard(
    name="vggish",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    backbone="vggish",
    license="Apache-2.0 (TensorFlow models VGGish, ported by harritaylor/torchvggish)",
    citation="Hershey et al., CNN Architectures for Large-Scale Audio Classification, ICASSP 2017",
    sha256_prefix="10086976",
))


@register_backbone("vggish")
def build(choice: WeightsChoice) -> Backbone:
    device = pick_device()
    if choice.mode == "untrained":
        model = vggish.build_vggish(seed=choice.seed)
        provenance = {"weights": "untrained", "backbone": "vggish", "seed": choice.seed,
                      "init": UNTRAINED_INIT, "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve("vggish", choice.weights_root, choice.local_file("vggish"),
                                            allow_download=choice.allow_download)
        model = vggish.build_vggish(state_dict=vggish.load_state_dict_file(resolved.path))
        provenance = {"backbone": "vggish", **resolved.provenance()}
    model = model.to(device)
    return Backbone("vggish", {"embedding": 128}, provenance, lambda x: {"embedding": vggish.embed(model, x)},
                    device)
