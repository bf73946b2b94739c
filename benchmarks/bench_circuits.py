"""Figure 20: circuits (issue 20), each ratio measured side by side in one process.

20a contributions of every source channel to one target channel (``fs.circuit`` without
    the check and the expanded weights) / one plain forward to L through the same taps
    (``run_with_grad``, stopped after L) and one backward pass to S. Lite0, 224 px.
20b the ranking for every channel of L at once (``fs.contribution_matrix``, batched) /
    the same ranking one target channel at a time (``fs.circuit`` per channel).
20c expanded weights between two adjacent bottleneck blocks of resnet50 (``layer3.0`` ->
    ``layer3.1``, 1024 x 1024 kernels, 3 x 3) in one batched impulse pass / one autograd
    pass per output channel (forward with S replaced by a leaf, backward from that
    channel's centre), on the same linearised network and input. The per-channel
    baseline is timed on a sample of output channels and scaled to all 1024 (each pass
    costs the same); a second baseline, one forward and a backward pass per channel
    (retain_graph), is in the notes.
"""
from __future__ import annotations

import time

import torch

from common import Figure, interleaved, median_ms, paired_ratio

LITE0_MIDDLE = "blocks.8.project"


def _lite0(size: int):
    from featurescope.core.models.load import load_model
    from featurescope.core.resources import default_sample
    from featurescope.core.io.images import load_image

    model = load_model("efficientnet_lite0", device="cpu")
    x = model.preprocess(load_image(default_sample()))
    if size != 224:
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear")
    return model, x


def contribution_figures(size: int = 224, rounds: int = 9, layer: str = LITE0_MIDDLE,
                         ranking_layer: str = "blocks.4.project", ranking_rounds: int = 4) -> list[Figure]:
    from featurescope.core.capture.grad import run_with_grad
    from featurescope.core.circuits.circuit import circuit
    from featurescope.core.circuits.contributions import contribution_matrix
    from featurescope.core.circuits.graph import layer_graph

    model, x = _lite0(size)
    source = layer_graph(model).default_source(layer)

    def plain():
        run = run_with_grad(model.module, x, [source, layer], model_name=model.name, stop_after=layer)
        return torch.autograd.grad(run.activations[layer][0, 3].mean(), run.activations[source])

    ours = lambda: circuit(model, x, layer, 3, check=False, weights=False)  # noqa: E731
    times = interleaved({"ours": ours, "plain": plain}, rounds)
    ratio = paired_ratio(times, "ours", "plain")
    figures = [Figure("20a", f"circuit contributions, one target (Lite0 {layer} <- {source}, {size} px)",
                      f"{median_ms(times['ours']):.0f} ms", f"forward to L + backward to S "
                      f"{median_ms(times['plain']):.0f} ms", ratio, f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3)]

    count = layer_graph(model).channels[ranking_layer]
    batched = lambda: contribution_matrix(model, x, ranking_layer)  # noqa: E731

    def one_at_a_time():
        return [circuit(model, x, ranking_layer, c, check=False, weights=False, top=None).contributions
                for c in range(count)]

    times = interleaved({"batched": batched, "single": one_at_a_time}, ranking_rounds)
    ratio = paired_ratio(times, "batched", "single")
    figures.append(Figure("20b", f"ranking all {count} channels of Lite0 {ranking_layer} at once",
                          f"batched {median_ms(times['batched']):.0f} ms",
                          f"one channel at a time {median_ms(times['single']):.0f} ms", ratio,
                          f"{ratio:.2f}x", "<= 0.3x", ratio <= 0.3))
    return figures


def _per_channel_pass(module, x, source, layer, geometry, channels, retain: bool):
    """One autograd pass per output channel of the linearised network (the baseline)."""
    from featurescope.core.capture.grad import run_with_grad
    from featurescope.core.capture.trace import Linearised

    ay, ax = geometry
    made = {}

    def leaf(output):
        made["leaf"] = torch.zeros_like(output[:1]).requires_grad_(True)
        return made["leaf"]

    def forward():
        with Linearised():
            return run_with_grad(module, x, [source, layer], model_name="resnet50", stop_after=layer,
                                 replace={source: leaf}).activations[layer]

    out = forward() if retain else None
    kernels = []
    for o in channels:
        if not retain:
            out = forward()
        cy, cx = out.shape[2] // 2, out.shape[3] // 2
        (grad,) = torch.autograd.grad(out[0, o, cy, cx], made["leaf"], retain_graph=retain)
        kernels.append(grad[0])
    return kernels


def expanded_figures(sample: int = 32, rounds: int = 2, source: str = "layer3.0", layer: str = "layer3.1") -> list[Figure]:
    import torchvision

    from featurescope.core.circuits import expanded

    module = torchvision.models.resnet50().eval()  # random weights: the cost does not depend on them
    geometry = expanded.geometry(module, layer, source)
    x = torch.zeros((1, 3, geometry[0].input_size, geometry[1].input_size))
    channels = list(range(sample))

    def ours():
        expanded._CACHE.pop(module, None)
        return expanded.expanded_weights(module, layer, source)

    per_channel = lambda: _per_channel_pass(module, x, source, layer, geometry, channels, False)  # noqa: E731
    retained = lambda: _per_channel_pass(module, x, source, layer, geometry, channels, True)  # noqa: E731
    times = interleaved({"ours": ours, "per_channel": per_channel, "retained": retained}, rounds)
    out_channels = 1024
    scale = out_channels / sample
    ratio = statistics_ratio(times["ours"], [t * scale for t in times["per_channel"]])
    retained_ratio = statistics_ratio(times["ours"], [t * scale for t in times["retained"]])
    figure = Figure("20c", f"expanded weights resnet50 {source} -> {layer} (1024 x 1024 x 3 x 3, "
                           f"{geometry[0].input_size} px input)",
                    f"one batched impulse pass {median_ms(times['ours']):.0f} ms",
                    f"one autograd pass per output channel {median_ms(times['per_channel']) * scale:.0f} ms "
                    f"(timed on {sample} channels, x{scale:.0f})", ratio, f"{ratio:.2f}x", "<= 0.2x", ratio <= 0.2)
    figure.notes.append(f"against one forward and a backward pass per channel (retain_graph): "
                        f"{retained_ratio:.2f}x ({median_ms(times['retained']) * scale:.0f} ms scaled)")
    return [figure]


def statistics_ratio(ours: list[float], baseline: list[float]) -> float:
    import statistics

    return statistics.median(a / b for a, b in zip(ours, baseline))


if __name__ == "__main__":  # python benchmarks/bench_circuits.py
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    torch.set_num_threads(1)
    started = time.time()
    for figure in contribution_figures() + expanded_figures():
        print(f"{figure.number} {figure.name}: {figure.ours} / {figure.baseline} = {figure.ratio_text} "
              f"(target {figure.target}: {figure.verdict})", *figure.notes, flush=True)
    print(f"{time.time() - started:.0f} s")
