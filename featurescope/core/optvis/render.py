"""Feature visualisation: the image that excites a channel most, found by gradient ascent.

The loop (Lucent's ``render_vis`` with its defaults): a Fourier-parameterised,
colour-decorrelated image (param.py), a random pad / jitter / scale / rotation at every
step (transforms.py), the model's own normalisation, a forward pass through the
capture taps that stops right after the target layer (core/capture/grad.py), the
objective (objectives.py), Adam at learning rate 0.05 on the spectrum. Several
channels are optimised together as one batch, each image with its own seed, so a
channel's picture does not depend on the batch it was made in.
"""
from __future__ import annotations

import copy

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image
import torch
from torch import nn

from featurescope.core.capture.grad import LayerForward
from featurescope.core.capture.taps import module_device
from featurescope.core.errors import OptvisError
from featurescope.core.optvis import param, transforms
from featurescope.core.optvis.objectives import check_objective, objective_values
from featurescope.core.progress import CancelToken, ProgressCallback, check, report

LEARNING_RATE = 0.05
DEFAULT_BATCH = 8
# Larger images: the forward and backward activations of a batch of 8 at 2048 px need
# tens of GB; the batch shrinks with the image (batch_for) down to one image at this side.
MAX_SIDE = 2048
BATCH_PIXELS = 8 * 512 * 512
# preview(channels, images (n, H, W, 3) uint8, step): the images as they are now
PreviewCallback = Callable[[list, np.ndarray, int], None]


@dataclass
class Visualization:
    """The optimised images and what they reached.

    ``images``: (N, H, W, 3) uint8, one per channel (grey for a one-channel network);
    ``activations``: (N,) float32, the objective each image reaches, seen without any
    transformation (for ``channel`` the channel's mean activation); ``channels``,
    ``layer``, ``settings`` (what made them: steps, size, seed, objective...); ``photo``:
what the best of the sample photos reaches, and ``failed``: the channels no picture
better than a photo was found for.
    ``images, activations = visualize(...)`` unpacks the two arrays.
    """

    images: np.ndarray
    activations: np.ndarray
    channels: list
    layer: str
    settings: dict = field(default_factory=dict)
    photo: Optional[np.ndarray] = None  # (N,) the best sample photo's value; NaN: not measured

    @property
    def failed(self) -> list:
        """Channels whose picture does not excite them more than a photo does: no
        visualisation was found (the objective's gradient vanishes for such images)."""
        if self.photo is None:
            return []
        return [c for c, a, p in zip(self.channels, self.activations, self.photo)
                if np.isfinite(p) and a <= p]

    def __iter__(self):
        yield self.images
        yield self.activations

    def __len__(self) -> int:
        return len(self.channels)


def _unpack(model):
    if isinstance(model, nn.Module):
        return model, None
    return model.module, model


def input_channels(model) -> int:
    """How many channels the network's input has: a LoadedModel's ``.channels``, else the
    first convolution's in_channels, else 3."""
    channels = None if isinstance(model, nn.Module) else getattr(model, "channels", None)
    if channels:
        return int(channels)
    module = getattr(model, "module", model)
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            return int(sub.in_channels)
    return 3


def normalisation(model, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std the model's own preprocessing uses (a bare nn.Module:
    none, the image in [0, 1] as is)."""
    loaded = None if isinstance(model, nn.Module) else model
    mean = tuple(getattr(loaded, "mean", None) or (0.0,) * 3)
    std = tuple(getattr(loaded, "std", None) or (1.0,) * 3)
    if len(mean) >= channels:
        mean, std = mean[:channels], std[:channels]
    else:
        mean, std = (mean[0],) * channels, (std[0],) * channels
    return (torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))


def image_size(model, size) -> tuple[int, int]:
    """(H, W) of the optimised image: ``size`` (int or (H, W)), else the model's input size."""
    if size is None:
        size = getattr(model, "input_size", None) or (224, 224)
    if isinstance(size, int):
        size = (size, size)
    height, width = (int(s) for s in size)
    if height < 8 or width < 8:
        raise OptvisError(f"An image of {height}x{width} px is too small to visualise; use at least 8 px.")
    if max(height, width) > MAX_SIDE:
        raise OptvisError(f"An image of {height}x{width} px is too large to visualise (its "
                          f"activations would not fit in memory); use at most {MAX_SIDE} px a side.")
    return height, width


def batch_for(size: tuple, batch_size: int) -> int:
    """Channels optimised at once: ``batch_size``, fewer for large images, so that a batch
    holds no more pixels than 8 images of 512 x 512 (memory grows with the pixels)."""
    pixels = max(1, int(size[0]) * int(size[1]))
    return max(1, min(int(batch_size), BATCH_PIXELS // pixels))


def parse_channels(channels) -> list[int]:
    """``channels`` as a list of ints: an int, an iterable, or text like "0-7" / "3,9,12"."""
    if isinstance(channels, (int, np.integer)):
        return [int(channels)]
    if isinstance(channels, str):
        chosen = []
        for part in (p.strip() for p in channels.split(",")):
            if not part:
                continue
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise OptvisError(f"{channels!r} is not a channel list; write e.g. 0-7 or 3,9,12.")
            chosen += list(range(int(first), int(last) + 1)) if dash else [int(first)]
        channels = chosen
    chosen = [int(c) for c in channels]
    if not chosen:
        raise OptvisError("No channels were asked for; name at least one.")
    negative = next((c for c in chosen if c < 0), None)
    if negative is not None:
        raise OptvisError(f"Channel {negative} does not exist; channels are numbered from 0.")
    return chosen


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, 3) uint8 (grey repeated for one channel; of a
    four-channel image the first three)."""
    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if array.shape[1] == 1:
        array = array.expand(-1, 3, -1, -1)
    array = array[:, :3]
    return np.ascontiguousarray(array.permute(0, 2, 3, 1).numpy())


def settings_of(steps: int, size: tuple, seed: int, objective: str,
                robustness: transforms.Robustness, learning_rate: float) -> dict:
    """The settings that decide what an image looks like (the cache key and the sidecar)."""
    return {"steps": int(steps), "size": [int(size[0]), int(size[1])], "seed": int(seed),
            "objective": objective, "learning_rate": float(learning_rate),
            "parameterisation": "fourier 1/f, decorrelated colour",
            # noise first; a channel noise cannot excite more than a photo starts from that photo
            "start": "noise, then the best sample photo where noise stays below it", "transforms": {
                "pad": robustness.pad, "jitter": robustness.jitter,
                "scale": [min(robustness.scales), max(robustness.scales)],
                "rotate_degrees": max(abs(a) for a in robustness.angles),
                "jitter_after": robustness.jitter_after}}


def _outside_inference_mode(function):
    """Run ``function`` with inference mode off: the app's workers may call it inside
    ``torch.inference_mode()``, where every new tensor could not join a graph."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False):
            return function(*args, **kwargs)

    return wrapper


@_outside_inference_mode
def visualize(model, layer: str, channels, steps: int = 512, size=None, seed: int = 0,
              objective: str = "channel", progress: Optional[ProgressCallback] = None,
              cancel: Optional[CancelToken] = None, *, preview: Optional[PreviewCallback] = None,
              preview_every: int = 16, batch_size: int = DEFAULT_BATCH,
              learning_rate: float = LEARNING_RATE,
              robustness: transforms.Robustness = transforms.Robustness(),
              resume: Optional[dict] = None) -> Visualization:
    """The images that excite ``channels`` of ``layer`` most (feature visualisation).

    ``model``: a LoadedModel (its mean, std and input size are used) or a bare
    ``nn.Module`` (fed the image in [0, 1] as is). ``layer``: a layer name as
    ``featurescope layers`` prints it. ``channels``: an int, a list, or text like
    "0-7" / "3,9,12". ``steps``: Adam steps (learning rate 0.05); ``size``: the image's
    side (int or (H, W); default the model's input size); ``seed`` fixes the result;
    ``objective``: "channel" (mean of the map), "neuron" (centre position) or
    "negative" (minus the mean). Channels are optimised ``batch_size`` at a time; the
    forward pass stops at ``layer``. ``progress(done, total, text)`` counts steps over all
    batches; ``cancel`` is checked between steps (raises ``progress.Cancelled``);
    ``preview(channels, images, step)`` gets the current (n, H, W, 3) uint8 images of a
    batch every ``preview_every`` steps. ``resume``: a dict the caller keeps between
    calls with the same settings; a cancelled call leaves each unfinished batch's state
    in it (image parameters, optimiser, random state, step) and the next call goes on
    from that step, to the picture an uninterrupted run gives. Returns a :class:`Visualization`. Raises
    OptvisError for a bad channel, size or objective, ModelError for an unknown layer
    or a network without gradients. The model's parameters, mode and gradients are
    left as they were.
    """
    from featurescope.core.models.spec import require_gradients

    module, loaded = _unpack(model)
    model_name = getattr(loaded, "name", None) or type(module).__name__
    require_gradients(model, "Feature visualisation")  # ONNX models run outside autograd
    check_objective(objective)
    chosen = parse_channels(channels)
    steps = int(steps)
    if steps < 1:
        raise OptvisError(f"steps must be at least 1, not {steps}.")
    height, width = image_size(model, size)
    device = getattr(loaded, "device", None) or module_device(module)
    in_channels = input_channels(model)
    mean, std = (t.to(device) for t in normalisation(model, in_channels))
    batch_size = batch_for((height, width), max(1, int(batch_size)))

    def check_output(output):
        if not torch.is_tensor(output) or output.dim() != 4:
            raise OptvisError(f"{layer!r} in {model_name} does not output a feature map, so its "
                              "channels cannot be visualised.")
        bad = [c for c in chosen if not 0 <= c < output.shape[1]]
        if bad:
            raise OptvisError(f"{layer!r} has {output.shape[1]} channels (0 to {output.shape[1] - 1}), "
                              f"so channel {bad[0]} does not exist.")

    forward = LayerForward(module, layer, model_name, check_output)
    batches = [chosen[i:i + batch_size] for i in range(0, len(chosen), batch_size)]
    total = steps * len(batches)
    images, reached = [], []
    was_training = module.training
    module.eval()
    try:
        for index, batch in enumerate(batches):
            done = index * steps

            def step_report(step, text=f"{layer}: channels {batch[0]}-{batch[-1]}", done=done):
                report(progress, done + step, total, text)

            image, values = _optimise(forward, batch, steps, (height, width), seed, objective,
                                      in_channels, mean, std, device, learning_rate, robustness,
                                      step_report, cancel, preview, preview_every, resume)
            images.append(image)
            reached.append(values)
        images, reached = np.concatenate(images), np.concatenate(reached).astype(np.float32)
        photo = np.full(len(chosen), np.nan, np.float32)
        if objective != "negative":
            photo, starts = _best_photos(model, layer, chosen, objective, (height, width), in_channels)
            weak = [i for i in range(len(chosen)) if reached[i] <= photo[i]]
            for first in range(0, len(weak), batch_size):
                # the objective's gradient vanished from noise (a saturated or dead unit,
                # a linear first layer): start again from the photo that drives it most
                part = weak[first:first + batch_size]
                check(cancel)
                again, values = _optimise(forward, [chosen[i] for i in part], steps, (height, width),
                                          seed, objective, in_channels, mean, std, device,
                                          learning_rate, robustness, lambda step: None, cancel,
                                          None, preview_every, start=starts[part].to(device))
                for j, i in enumerate(part):
                    if values[j] > reached[i]:
                        images[i], reached[i] = again[j], values[j]
    finally:
        module.train(was_training)
    settings = settings_of(steps, (height, width), seed, objective, robustness, learning_rate)
    return Visualization(images, reached, chosen, layer, settings, photo)


def _best_photos(model, layer, channels, objective, size, in_channels):
    """Per channel, the best sample photo's value (as the result is measured: no
    transformation) and that photo, (N, C, H, W) in [0, 1] at ``size``."""
    from featurescope.core.resources import sample_images

    height, width = size
    pictures = []
    for path in sample_images():
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        side = min(picture.size)
        left, top = (picture.width - side) // 2, (picture.height - side) // 2
        picture = picture.crop((left, top, left + side, top + side)).resize((width, height), Image.BILINEAR)
        pictures.append(torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float() / 255)
    photos = torch.stack(pictures)  # (P, 3, H, W)
    count = len(photos)
    values = activation_of(model, layer, [c for c in channels for _ in range(count)],
                           photos.repeat(len(channels), 1, 1, 1), objective).reshape(len(channels), count)
    starts = photos[torch.from_numpy(values.argmax(1))]
    if in_channels == 1:
        starts = starts.mean(1, keepdim=True)
    elif in_channels == 4:
        starts = torch.cat([starts, torch.ones_like(starts[:, :1])], 1)
    return values.max(1).astype(np.float32), starts


def _optimise(forward, channels, steps, size, seed, objective, in_channels, mean, std, device,
              learning_rate, robustness, step_report, cancel, preview, preview_every, resume=None,
              start=None):
    height, width = size
    seeds = param.seeds_for(seed, channels)
    rngs = [np.random.default_rng(s) for s in seeds]
    scale = param.spectrum_scale(height, width).to(device)
    if start is None:
        spectrum = param.init_spectrum(seeds, in_channels, height, width)
    else:  # from pictures (N, C, H, W) in [0, 1]
        spectrum = param.image_to_spectrum(start, scale.cpu(), in_channels == 3)
    spectrum = spectrum.to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([spectrum], lr=learning_rate)
    targets = torch.tensor(channels, device=device)
    decorrelate = in_channels == 3
    first = 0
    saved = resume.pop(tuple(channels), None) if resume is not None else None
    if saved is not None:  # go on where a cancelled run stopped
        first = saved["step"]
        with torch.no_grad():
            spectrum.copy_(saved["spectrum"].to(device))
        optimizer.load_state_dict(saved["optimizer"])
        for rng, state in zip(rngs, saved["rngs"]):
            rng.bit_generator.state = state
    with torch.inference_mode(False), torch.enable_grad():
        for step in range(first, steps):
            if resume is not None and cancel is not None and cancel.is_cancelled:
                resume[tuple(channels)] = {
                    "step": step, "spectrum": spectrum.detach().clone(),
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                    "rngs": [rng.bit_generator.state for rng in rngs]}
            check(cancel)
            image = param.spectrum_to_image(spectrum, scale, height, width, decorrelate)
            thetas = transforms.random_affines(rngs, size, robustness)
            x = (transforms.apply(image, thetas, robustness) - mean) / std
            values = objective_values(forward(x), targets, objective)
            (gradient,) = torch.autograd.grad(-values.sum(), [spectrum])
            spectrum.grad = gradient
            optimizer.step()
            step_report(step + 1)
            if preview is not None and ((step + 1) % max(1, preview_every) == 0 or step + 1 == steps):
                with torch.no_grad():
                    shown = param.spectrum_to_image(spectrum, scale, height, width, decorrelate)
                preview(list(channels), to_uint8(shown), step + 1)
        with torch.no_grad():
            final = param.spectrum_to_image(spectrum, scale, height, width, decorrelate)
            reached = objective_values(forward((final - mean) / std, grad=False), targets, objective)
    return to_uint8(final), reached.detach().float().cpu().numpy()


@_outside_inference_mode
def activation_of(model, layer: str, channels: Sequence[int], images, objective: str = "channel") -> np.ndarray:
    """(N,) the objective ``images`` (N, H, W, 3) uint8 or (N, C, H, W) float in [0, 1]
    reach for ``channels`` (one per image) at ``layer``, through the model's own
    normalisation and no other transformation: how a visualisation, a photo or noise
    compare."""
    module, loaded = _unpack(model)
    model_name = getattr(loaded, "name", None) or type(module).__name__
    device = getattr(loaded, "device", None) or module_device(module)
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float() / 255.0
    in_channels = input_channels(model)
    x = x.float()
    if x.shape[1] != in_channels:
        if in_channels == 1:
            x = x.mean(1, keepdim=True)  # grey
        elif x.shape[1] == 1:
            x = x.expand(-1, min(3, in_channels), -1, -1)
        if in_channels == 4 and x.shape[1] == 3:
            x = torch.cat([x, torch.ones_like(x[:, :1])], 1)  # opaque
    if x.shape[1] != in_channels:
        raise OptvisError(f"{model_name} takes {in_channels}-channel images, not {x.shape[1]}-channel ones.")
    mean, std = normalisation(model, in_channels)
    x = ((x.float() - mean) / std).to(device)
    forward = LayerForward(module, layer, model_name)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            values = objective_values(forward(x, grad=False), torch.tensor(list(channels)),
                                    check_objective(objective))
    finally:
        module.train(was_training)
    return values.float().cpu().numpy()

