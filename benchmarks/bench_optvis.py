"""Figure 9: feature visualisation against Lucent (torch-lucent), side by side.

Same model (EfficientNet-Lite0 with its ImageNet weights), layer, channels, image size,
forward resolution (the image plus Lucent's 12 px padding on each side), normalisation
(the model's own: mean = std = 0.5) and step count. Lucent renders one channel per
call and runs the whole network at every step; featurescope stops at the layer and
optimises the channels as one batch. Time: this thread's CPU time per channel.
Quality: each result's mean activation of its channel on the final image, untransformed,
measured by the same function; the ratio is ours / Lucent's, averaged over channels.

Needs the ``bench`` extra (``pip install featurescope[bench]``: torch-lucent with
kornia <= 0.4.1); without it the figure says so.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch

from common import Figure

LITE0_MIDDLE = "blocks.8.project"
LITE0_LAST = "head"


def _lucent_render(module, layer: str, channel: int, steps: int, size: int, pad: int, seed: int):
    from lucent.optvis import param, render, transform

    np.random.seed(seed)
    torch.manual_seed(seed)
    normalise = lambda x: (x - 0.5) / 0.5  # noqa: E731  (Lite0's own normalisation)
    transforms = list(transform.standard_transforms) + [normalise]
    images = render.render_vis(
        module, f"{layer.replace('.', '_')}:{channel}", param_f=lambda: param.image(size),
        transforms=transforms, thresholds=(steps,), preprocess=False, progress=False,
        show_image=False, fixed_image_size=size + 2 * pad)
    return (np.clip(images[-1][0], 0, 1) * 255).round().astype(np.uint8)


def optvis_figures(steps: int, size: int, channels: list[int], layers=(LITE0_MIDDLE, LITE0_LAST),
                   check: bool = True) -> list[Figure]:
    """11a/11b: time per channel and activation reached, featurescope / Lucent."""
    try:
        import lucent.optvis.render  # noqa: F401
    except Exception as error:  # noqa: BLE001 (missing, or broken by a newer kornia)
        return [Figure("11", "feature visualisation vs Lucent",
                       f"Lucent not importable ({type(error).__name__}); install the bench extra",
                       "-", None, "-")]
    from featurescope.core.models.load import load_model
    from featurescope.core.optvis.render import activation_of, visualize
    from featurescope.core.optvis.transforms import Robustness

    model = load_model("efficientnet_lite0", device="cpu")
    pad = Robustness().pad
    figures = []
    above, tried = 0, 0  # 9c: channels whose image beats every bundled photo and noise
    for number, layer, target in (("11a", layers[0], 0.5), ("11b", layers[1], 0.8)):
        # Lucent hooks every module for good: give it its own copy of the network
        lucent_module = copy.deepcopy(model.module).eval()
        start = time.thread_time()
        lucent_images = np.stack([_lucent_render(lucent_module, layer, c, steps, size, pad, seed=0)
                                  for c in channels])
        lucent_time = (time.thread_time() - start) / len(channels)
        start = time.thread_time()
        ours = visualize(model, layer, channels, steps=steps, size=size, seed=0,
                         batch_size=len(channels))
        our_time = (time.thread_time() - start) / len(channels)
        ours_reached = activation_of(model, layer, channels, ours.images)
        lucent_reached = activation_of(model, layer, channels, lucent_images)
        quality = float(np.mean(ours_reached) / np.mean(lucent_reached))
        ratio = our_time / lucent_time
        met = (ratio <= target and quality >= 0.9) if check else None
        figure = Figure(
            number, f"optvis {layer} @{size}px, {steps} steps, {len(channels)} ch (vs Lucent)",
            f"{our_time / steps * 1e3:.1f} ms/step/ch, act {np.mean(ours_reached):.2f}",
            f"Lucent {lucent_time / steps * 1e3:.1f} ms/step/ch, act {np.mean(lucent_reached):.2f}",
            ratio, f"{ratio:.2f}x time, {quality:.2f}x act",
            f"time <= {target}, act >= 0.9", met)
        figure.notes.append("activations per channel, ours / Lucent: " + ", ".join(
            f"{c}: {a:.2f}/{b:.2f}" for c, a, b in zip(channels, ours_reached, lucent_reached)))
        figures.append(figure)
        beats = _beats_photos_and_noise(model, layer, channels, ours_reached, size)
        above, tried = above + int(beats.sum()), tried + len(channels)
    share = above / max(1, tried)
    figures.append(Figure(
        "11c", f"optvis quality: image above every sample photo and noise ({', '.join(layers)})",
        f"{above} of {tried} channels", "-", share, f"{share:.0%}", ">= 90%",
        share >= 0.9 if check else None))
    return figures


def _beats_photos_and_noise(model, layer, channels, reached, size) -> np.ndarray:
    """Per channel: its optimised image's mean activation is above its mean on every
    bundled sample photo (the ordinary capture) and on a uniform-noise image."""
    from featurescope.core.capture.capture import capture
    from featurescope.core.io.images import load_image
    from featurescope.core.optvis.render import activation_of
    from featurescope.core.resources import sample_images

    photos = np.stack([capture(model, load_image(p), layers=[layer])[layer].flatten(1).mean(1)[channels].numpy()
                       for p in sample_images()])
    noise = np.random.default_rng(0).integers(0, 256, (len(channels), size, size, 3), dtype=np.uint8)
    return (np.asarray(reached) > photos.max(axis=0)) & (np.asarray(reached) > activation_of(model, layer, channels, noise))
