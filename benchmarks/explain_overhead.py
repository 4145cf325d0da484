"""What an explanation adds to a classification, per depth: classify vs +CAM vs +Grad-CAM.

    python benchmarks/explain_overhead.py [--repeats N] [--device auto]

Target (issue 3): CAM adds at most 5% to classification at ResNet-50. CAM reuses the
classification's forward pass (features of layer4), so it costs one small einsum.
"""

from __future__ import annotations

from common import EXAMPLE, median_time, setup


def main() -> None:
    args, device, specs = setup(__doc__)

    from zoo.explain import explain
    from zoo.inference import classify
    from zoo.models import load_model

    print(f"device: {device}")
    print(f"{'model':<11}{'classify ms':>12}{'+CAM ms':>10}{'+Grad-CAM ms':>14}{'CAM ratio':>11}{'Grad-CAM ratio':>16}")
    for spec in specs:
        lm = load_model(spec, device)
        alone = median_time(lambda: classify(lm, EXAMPLE), args.repeats)[0]
        cam = median_time(lambda: explain(lm, classify(lm, EXAMPLE), "cam"), args.repeats)[0]
        grad = median_time(lambda: explain(lm, classify(lm, EXAMPLE), "gradcam"), args.repeats)[0]
        print(f"{spec.name:<11}{alone * 1e3:12.1f}{cam * 1e3:10.1f}{grad * 1e3:14.1f}{cam / alone:11.3f}{grad / alone:16.2f}")


if __name__ == "__main__":
    main()
