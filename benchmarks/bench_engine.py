"""Figures 1-3 and 6: capture cost, grids, PNG export, GPU. All in this process."""
from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import Figure, interleaved, median_ms, paired_ratio


def _model(name: str) -> torch.nn.Module:
    """The network with random weights (the cost does not depend on the values)."""
    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        from featurescope.core.models.sources import lite

        return lite.EfficientNetLite0().eval()
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()


# Capture / plain forward targets (issue 8). Depthwise networks do little arithmetic per
# byte, so keeping every output costs them more (see BOUNDS in RESULTS.md, figure 1).
CAPTURE_TARGETS = {"efficientnet_lite0": 1.10}
CAPTURE_TARGET = 1.05


def capture_figures(models, size: int, rounds: int, device: str = "cpu",
                    seconds: float = 1.0) -> list[Figure]:
    """1. capture of every conv/pool layer / plain forward pass, same input tensor; at
    least ``rounds`` rounds, more (up to 60) for a model whose ``seconds`` of forward
    passes hold more."""
    from featurescope.core.capture.capture import capture

    figures = []
    for name in models:
        module = _model(name).to(device)
        plain = copy.deepcopy(module)  # never captured: no taps on its layers
        x = torch.randn(1, 3, size, size, device=device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def forward():
            with torch.inference_mode():
                out = plain(x)
            sync()
            return out

        def captured():
            result = capture(module, x)
            sync()
            return result

        layers = len(capture(module, x).layers)
        # Lite0's ratio moved by +-0.03 between runs of 15 rounds (cache and heap layout);
        # with 60 rounds by about half that.
        start = time.perf_counter()
        forward()
        model_rounds = max(rounds, min(60, int(seconds / (time.perf_counter() - start))))
        times = interleaved({"forward": forward, "capture": captured}, model_rounds, warmup=2,
                            wall=device != "cpu")
        ratio = paired_ratio(times, "capture", "forward")
        target = CAPTURE_TARGETS.get(name, CAPTURE_TARGET)
        figures.append(Figure(
            "1" if device == "cpu" else "6", f"capture cost {name} @{size} ({device})",
            f"capture {layers} layers {median_ms(times['capture']):.1f} ms",
            f"forward {median_ms(times['forward']):.1f} ms", ratio, f"{ratio:.3f}x",
            f"<= {target:.2f}", ratio <= target))
        del module, plain
    return figures


def batch_figures(models, size: int, batch: int, rounds: int) -> list[Figure]:
    """1b. capture_batch of ``batch`` images / the plain batched forward pass."""
    from featurescope.core.capture.capture import capture_batch

    figures = []
    for name in models:
        module = _model(name)
        plain = copy.deepcopy(module)  # never captured: no taps on its layers
        x = torch.randn(batch, 3, size, size)

        def forward():
            with torch.inference_mode():
                return plain(x)

        layers = len(capture_batch(module, x).layers)
        times = interleaved({"forward": forward, "capture": lambda: capture_batch(module, x)},
                            rounds, warmup=1)
        ratio = paired_ratio(times, "capture", "forward")
        figures.append(Figure(
            "1b", f"capture_batch cost {name} {batch}x{size}",
            f"capture_batch {layers} layers {median_ms(times['capture']):.0f} ms",
            f"batched forward {median_ms(times['forward']):.0f} ms", ratio, f"{ratio:.3f}x",
            "<= 1.10", ratio <= 1.10))
        del module, plain
    return figures


def _activation(shape, seed: int = 0) -> torch.Tensor:
    """A realistic post-ReLU activation: sparse, non-negative, per-channel scales."""
    generator = torch.Generator().manual_seed(seed)
    c = shape[0]
    scales = torch.rand(c, 1, 1, generator=generator) * 3
    return torch.relu(torch.randn(shape, generator=generator) * scales)


def _matplotlib_grid(chw: np.ndarray) -> object:
    """What users write by hand: one subplot per channel, imshow, draw the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels = chw.shape[0]
    columns = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows), dpi=100)
    for index, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if index < channels:
            ax.imshow(chw[index], cmap="viridis")
    fig.canvas.draw()
    plt.close(fig)
    return fig


def grid_figures(shapes, rounds: int, matplotlib_rounds: int) -> list[Figure]:
    """2. feature_grid vs make_grid(normalize, scale_each) and vs a matplotlib grid."""
    from torchvision.utils import make_grid

    from featurescope.core.render.grids import feature_grid

    figures = []
    for shape in shapes:
        t = _activation(shape)
        a = t.numpy()
        ours = lambda: feature_grid(t)  # noqa: E731
        theirs = lambda: make_grid(t.unsqueeze(1), nrow=math.ceil(math.sqrt(shape[0])), padding=1,  # noqa: E731
                                   normalize=True, scale_each=True)
        times = interleaved({"ours": ours, "make_grid": theirs}, rounds, warmup=2)
        ratio = paired_ratio(times, "ours", "make_grid")
        label = "x".join(map(str, shape))
        figures.append(Figure("2a", f"grid {label} vs make_grid",
                              f"feature_grid {median_ms(times['ours']):.2f} ms",
                              f"make_grid {median_ms(times['make_grid']):.2f} ms",
                              ratio, f"{ratio:.2f}x", "<= 1.0", ratio <= 1.0))
        mpl = interleaved({"ours": ours, "matplotlib": lambda: _matplotlib_grid(a)},
                          matplotlib_rounds, warmup=1)
        speedup = 1.0 / paired_ratio(mpl, "ours", "matplotlib")
        figures.append(Figure("2b", f"grid {label} vs matplotlib",
                              f"feature_grid {median_ms(mpl['ours']):.2f} ms",
                              f"subplots+imshow {median_ms(mpl['matplotlib']):.0f} ms",
                              speedup, f"{speedup:.0f}x faster", ">= 20x faster", speedup >= 20))
    return figures


def export_figures(shapes, rounds: int) -> list[Figure]:
    """3. activation -> PNG grid file: feature_grid + write_png vs save_image."""
    from torchvision.utils import save_image

    from featurescope.core.io.writers import write_png
    from featurescope.core.render.grids import feature_grid

    figures = []
    with tempfile.TemporaryDirectory(prefix="featurescope-bench-") as folder:
        ours_path, theirs_path = Path(folder, "ours.png"), Path(folder, "theirs.png")
        for shape in shapes:
            t = _activation(shape)
            nrow = math.ceil(math.sqrt(shape[0]))
            ours = lambda: write_png(ours_path, feature_grid(t), force=True)  # noqa: E731
            theirs = lambda: save_image(t.unsqueeze(1), theirs_path, nrow=nrow, padding=1,  # noqa: E731
                                        normalize=True, scale_each=True)
            times = interleaved({"ours": ours, "save_image": theirs}, rounds, warmup=1, wall=True)
            ratio = paired_ratio(times, "ours", "save_image")
            label = "x".join(map(str, shape))
            figures.append(Figure(
                "3", f"PNG export {label}",
                f"feature_grid+write_png {median_ms(times['ours']):.1f} ms "
                f"({ours_path.stat().st_size // 1024} KiB)",
                f"save_image {median_ms(times['save_image']):.1f} ms "
                f"({theirs_path.stat().st_size // 1024} KiB)",
                ratio, f"{ratio:.2f}x", "<= 1.0", ratio <= 1.0))
    return figures


def gpu_figures(models, size: int, rounds: int) -> list[Figure]:
    """6. capture on CUDA: the pass and the stored outputs stay on the GPU."""
    if not torch.cuda.is_available():
        return [Figure("6", "GPU capture", "no CUDA device on this machine", "-", None, "-")]
    figures = capture_figures(models, size, rounds, device="cuda")
    from featurescope.core.capture.capture import capture

    module = _model(models[0]).cuda()
    result = capture(module, torch.randn(1, 3, size, size, device="cuda"))
    on_gpu = all(result.raw(name).is_cuda for name in result.layers)
    shown = result[result.layers[0]]
    figures[0].notes.append(f"stored outputs on the GPU: {on_gpu}; result[name] -> {shown.device}")
    return figures
