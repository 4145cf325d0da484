"""Generated ResNet-18 weights that answer the self-check's photos as a real ImageNet ResNet would.

The trunk is torchvision's random init; only ``fc`` is solved: for each example photo of
``zoo.selfcheck.PHOTOS``, the row of its first accepted class is moved (least-norm change,
exact on the three photos' features) so that this class leads that photo's logits by
``MARGIN``, while the row's logits on the other photos stay as they were. Everything else
is left random, so a wrong input or wrong weights gives other answers.

Used by tests/test_selfcheck.py, tests/test_mcp.py and benchmarks/mcp_selfcheck_demo.py.
"""

from __future__ import annotations

from pathlib import Path

MARGIN = 8.0  # logits: the accepted class leads the photo's next best by this much


def photo_features(model, photos) -> "torch.Tensor":
    """Each photo's pooled layer4 features (fp32, BatchNorm unfolded), through the app's own crop and recipe."""
    import torch

    from zoo.images import load_image
    from zoo.inference import prepare
    from zoo.registry import Preprocessing
    from zoo.selfcheck import EXAMPLES

    rows = []
    with torch.no_grad():
        for photo in photos:
            x = prepare(load_image(EXAMPLES / photo.file), Preprocessing()).batch
            m = model
            x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
            rows.append(torch.flatten(m.avgpool(x), 1)[0])
    return torch.stack(rows).double()


def selfcheck_state(seed: int = 0) -> dict:
    """The state dict (torchvision's keys) of a ResNet-18 that passes the self-check."""
    import torch
    import torchvision

    from zoo.selfcheck import PHOTOS

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None).eval()
    feats = photo_features(model, PHOTOS)  # 3 x 512
    w = model.fc.weight.detach().double() * 20
    b = model.fc.bias.detach().double()
    logits = feats @ w.T + b  # 3 x 1000
    gram_inv = torch.linalg.inv(feats @ feats.T)
    for j, photo in enumerate(PHOTOS):
        k = photo.accepted[0][0]
        wanted = logits[:, k].clone()
        others = torch.cat([logits[j, :k], logits[j, k + 1:]])
        wanted[j] = others.max() + MARGIN
        w[k] += feats.T @ (gram_inv @ (wanted - (feats @ w[k] + b[k])))
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state["fc.weight"] = w.float().contiguous()
    return state


def swapped_keys(state: dict) -> dict:
    """The same tensors with some same-shaped ones under each other's keys: it loads (strict), it is wrong."""
    out = dict(state)
    for a, b in (("layer1.0.conv1.weight", "layer1.1.conv2.weight"), ("layer2.1.conv1.weight", "layer2.1.conv2.weight"),
                 ("layer3.1.conv1.weight", "layer3.1.conv2.weight"), ("layer4.1.conv1.weight", "layer4.1.conv2.weight")):
        out[a], out[b] = state[b], state[a]
    return out


def save(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
