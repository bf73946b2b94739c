"""Figures 19a-19d: channel attribution, integrated gradients, Score-CAM and the deletion
check, each against its baseline measured side by side in the same rounds.

- 19a: ``fs.attribute(method="grad_x_act")`` over every channel of a layer / one plain
  forward + backward of the same model and image (``model(x)[0, c].backward()``).
- 19b: integrated gradients at a layer, 32 steps / Captum's ``LayerIntegratedGradients``
  with the same steps and quadrature (Gauss-Legendre), on the network with that layer's
  output replaced (a forward hook, the reference's way), so both start from the layer
  set to zero; the attributions are compared too (correlation, sums).
- 19c: Score-CAM / the grad-cam package's ``ScoreCAM`` (batch 16, its default), same map.
- 19d: the whole deletion check (6 values of k, three rankings, 5 random draws) / the
  same 42 ablations one at a time through ``fs.ablate``.

Time: this thread's CPU time (torch single-threaded), median of paired ratios.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common import Figure, interleaved, median_ms, paired_ratio


def _models(names, size):
    import torchvision

    from featurescope.core.models.load import load_model

    for name in names:
        if name == "efficientnet_lite0":
            model = load_model(name, device="cpu")
            yield name, model.module, "blocks.12.project", model
        else:
            torch.manual_seed(0)
            module = getattr(torchvision.models, name)(weights=None).eval()
            yield name, module, "layer3", module


def grad_x_act_figures(names, size: int, rounds: int) -> list[Figure]:
    from featurescope.core.analysis.attribution import attribute

    figures = []
    for name, module, layer, model in _models(names, size):
        torch.manual_seed(1)
        x = torch.randn(1, 3, size, size)
        target = int(module(x).argmax())

        def plain():
            module.zero_grad(set_to_none=True)
            module(x)[0, target].backward()
            module.zero_grad(set_to_none=True)

        times = interleaved({"ours": lambda: attribute(model, x, layer, target=target), "plain": plain},
                            rounds)
        ratio = paired_ratio(times, "ours", "plain")
        figures.append(Figure(
            "19a", f"grad x act, every channel of {name} {layer} ({size} px)",
            f"{median_ms(times['ours']):.0f} ms", f"forward + backward {median_ms(times['plain']):.0f} ms",
            ratio, f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3))
    return figures


class _Replaced(nn.Module):
    """The network as a function of one layer's output (a forward hook replaces it; the
    photo is repeated to the batch), so that Captum's LayerIntegratedGradients starts
    from that layer set to zero, as featurescope's integrated gradients do."""

    def __init__(self, module, layer, x):
        super().__init__()
        self.module, self.x, self.entry = module, x, nn.Identity()
        self.layer = dict(module.named_modules())[layer]

    def forward(self, a):
        a = self.entry(a)
        handle = self.layer.register_forward_hook(lambda m, i, o: a.clone())
        try:
            return self.module(self.x.expand(a.shape[0], -1, -1, -1))
        finally:
            handle.remove()


def integrated_gradients_figures(names, size: int, rounds: int, steps: int = 32) -> list[Figure]:
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        return [Figure("19b", "integrated gradients vs Captum", "captum not installed", "-", None, "-")]
    from featurescope.core.analysis.attribution import attribute

    figures = []
    for name, module, layer, model in _models(names, size):
        torch.manual_seed(2)
        x = torch.randn(1, 3, size, size)
        found = attribute(model, x, layer)
        rest = _Replaced(module, layer, x)
        kept = {}
        handle = rest.layer.register_forward_hook(lambda m, i, o: kept.__setitem__("a", o.detach().clone()))
        with torch.no_grad():
            module(x)
        handle.remove()
        a = kept["a"]
        lig = LayerIntegratedGradients(rest, rest.entry)

        def captum():
            return lig.attribute(a, baselines=torch.zeros_like(a), target=found.target, n_steps=steps,
                                 method="gausslegendre")[0].detach()

        ours = attribute(model, x, layer, target=found.target, method="integrated_gradients", steps=steps)
        theirs = captum()
        correlation = float(np.corrcoef(ours.maps.ravel(), theirs.numpy().ravel())[0, 1])
        sums = abs(ours.channels.sum() - float(theirs.sum())) / abs(float(theirs.sum()))
        complete = abs(ours.channels.sum() - (ours.logit - ours.baseline_logit)) / abs(ours.logit - ours.baseline_logit)
        times = interleaved({"ours": lambda: attribute(model, x, layer, target=found.target,
                                                       method="integrated_gradients", steps=steps),
                             "captum": captum}, rounds)
        ratio = paired_ratio(times, "ours", "captum")
        figure = Figure(
            "19b", f"integrated gradients, {steps} steps, {name} {layer} ({size} px)",
            f"{median_ms(times['ours']):.0f} ms", f"Captum LayerIntegratedGradients {median_ms(times['captum']):.0f} ms",
            ratio, f"{ratio:.2f}x", "<= 0.5x, corr > 0.99, sums within 1 %",
            ratio <= 0.5 and correlation > 0.99 and sums < 0.01)
        figure.notes.append(f"{name}: correlation with Captum {correlation:.6f}, sums differ by "
                            f"{sums * 100:.4f} %, contributions vs logit difference {complete * 100:.3f} %")
        figures.append(figure)
    return figures


def score_cam_figures(size: int, rounds: int) -> list[Figure]:
    try:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return [Figure("19c", "Score-CAM vs grad-cam", "grad-cam not installed", "-", None, "-")]
    import contextlib
    import io

    from featurescope.core.analysis.gradcam import compute_grad_cam
    from featurescope.core.models.load import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    layer = "blocks.15.project"  # 320 channels at 7x7
    from featurescope.core.io.images import load_image
    from featurescope.core.resources import default_sample

    x = model.preprocess(load_image(default_sample()))
    if size != 224:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    target = int(model.module(x).argmax())
    reference = pytorch_grad_cam.ScoreCAM(model=model.module,
                                          target_layers=[dict(model.module.named_modules())[layer]])

    def theirs():
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
            return reference(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]

    def ours():
        return compute_grad_cam(model, x, layer, target, method="scorecam").map

    difference = float(np.abs(ours() - theirs()).max())
    times = interleaved({"ours": ours, "theirs": theirs}, rounds, warmup=0)
    reference.activations_and_grads.release()
    ratio = paired_ratio(times, "ours", "theirs")
    figure = Figure("19c", f"Score-CAM, efficientnet_lite0 {layer} ({size} px)",
                    f"{median_ms(times['ours']):.0f} ms", f"grad-cam ScoreCAM {median_ms(times['theirs']):.0f} ms",
                    ratio, f"{ratio:.2f}x", "<= 0.5x, same map", ratio <= 0.5 and difference < 1e-3)
    figure.notes.append(f"largest difference between the two maps: {difference:.2e}")
    return [figure]


def deletion_figures(size: int, rounds: int) -> list[Figure]:
    from featurescope.core.analysis.ablate import ablate
    from featurescope.core.analysis.attribution import attribute
    from featurescope.core.analysis.faithfulness import faithfulness
    from featurescope.core.io.images import load_image
    from featurescope.core.models.load import load_model
    from featurescope.core.resources import default_sample

    model = load_model("efficientnet_lite0", device="cpu")
    layer = "head"
    x = model.preprocess(load_image(default_sample()))
    if size != 224:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    found = attribute(model, x, layer)
    ks = (1, 2, 5, 10, 20, 50)
    count = len(found.channels)
    generator = np.random.default_rng(0)
    orders = [found.top(count), list(np.argsort(-found.mean_activations, kind="stable"))] + \
        [list(generator.permutation(count)) for _ in range(5)]

    def ours():
        return faithfulness(model, x, layer, found, ks=ks)

    def one_at_a_time():
        from featurescope.core.capture.capture import capture

        original = capture(model, x)
        return [ablate(model, original, layer, order[:k]) for order in orders for k in ks]

    times = interleaved({"ours": ours, "fs.ablate": one_at_a_time}, rounds, warmup=0)
    ratio = paired_ratio(times, "ours", "fs.ablate")
    return [Figure("19d", f"deletion check (42 ablations), efficientnet_lite0 {layer} ({size} px)",
                   f"{median_ms(times['ours']):.0f} ms",
                   f"fs.ablate one at a time {median_ms(times['fs.ablate']):.0f} ms",
                   ratio, f"{ratio:.2f}x", "<= 0.5x", ratio <= 0.5)]


def why_figures(quick: bool) -> list[Figure]:
    """Every figure of issue 19 (quick: Lite0 only, 32 px, one round: the smoke run)."""
    if quick:
        return (grad_x_act_figures(["efficientnet_lite0"], 32, 1)
                + integrated_gradients_figures(["efficientnet_lite0"], 32, 1)
                + score_cam_figures(32, 1) + deletion_figures(32, 1))
    names = ["resnet18", "efficientnet_lite0"]
    return (grad_x_act_figures(names, 224, 9) + integrated_gradients_figures(names, 224, 5)
            + score_cam_figures(224, 2) + deletion_figures(224, 3))
