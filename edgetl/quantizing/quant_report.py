"""Where int8 loses accuracy: the quantization report of an int8 reference graph.

The converted PT2E graph runs twice on calibration images: once with every quantize/dequantize
pair bypassed (the float model, batch norm folded) and once as it is (int8 arithmetic simulated
exactly). For every quantized tensor the report gives its scale, how many of the 256 int8
levels the data uses and how much of it saturates, the SQNR of that tensor's own rounding
(local: the error the layer adds) and of the int8 graph up to there (cumulative: the error that
reaches it); for every weight, its SQNR and levels. Per block (a residual block, the stem, the
head, the classifier) it gives the cumulative SQNR lost across it; the blocks that lose most are
then run in float one at a time (the graph that mixed precision would ship): the output SQNR
each one gains is its sensitivity, and the most sensitive blocks are what mitigation keeps in
float.
"""
import math

import numpy as np
import torch

from .nodes import DEQUANT_OPS, QUANT_OPS
from .references import fusable, quantize_dequantize, weight_constants
from .layers import (block_of, clipped_next, float_region_quants,
                     is_quant, op_name, quantized_tensor_layer)

CANDIDATES = 6                 # blocks tried in float for the sensitivity ranking
GAIN_DB = 0.5                  # output SQNR gain that makes a block "sensitive"


class _Probe(torch.fx.Interpreter):
    """Runs a converted graph; the quantize/dequantize ops of the quantize nodes named in
    `bypass` (all, with bypass=True) pass values through; records what reaches each quantize
    node. The rest runs as references.fast_reference runs it (the same values, bit for bit):
    each weight's pair done once, each activation's pair as one quantize_dequantize pass."""

    def __init__(self, gm, bypass=()):
        super().__init__(gm)
        self.bypass, self.seen = bypass, {}
        self.fused = {q for q in gm.graph.nodes if fusable(q)}
        self.weights = weight_constants(gm)

    def _skip(self, node) -> bool:
        if self.bypass is True:
            return True
        q = node if is_quant(node) else node.args[0]
        return isinstance(q, torch.fx.Node) and q.name in self.bypass

    def run_node(self, n):
        if n.op == "call_function" and op_name(n.target).startswith(QUANT_OPS + DEQUANT_OPS):
            x = self.env[n.args[0]]
            if is_quant(n):
                self.seen[n.name] = x.detach()
            if self._skip(n):
                return x
            if n in self.fused:
                return quantize_dequantize(x, *n.args[1:5])
            if n.args[0] in self.fused:                 # its quantize already dequantized
                return x
            if n in self.weights:
                return self.weights[n]
        return super().run_node(n)


def tensor_layers(converted) -> dict:
    """{quantize node name: (layer, 'activation' | 'weight')} in graph order."""
    return {q.name: quantized_tensor_layer(q) for q in converted.graph.nodes if is_quant(q)}


def analyse(converted, batches, candidates: int = CANDIDATES) -> dict:
    """The report (see the module docstring) over `batches` of float input images."""
    nodes = {n.name: n for n in converted.graph.nodes}
    layers = tensor_layers(converted)
    acts = [nodes[n] for n, (_, kind) in layers.items() if kind == "activation"
            and op_name(nodes[n].target).startswith("quantize_per_tensor")
            and not clipped_next(nodes[n])]
    stats = {q.name: _Stats() for q in acts}
    out_f, out_q = [], []
    fl, qu = _Probe(converted, bypass=True), _Probe(converted)      # each built once
    with torch.no_grad():
        for x in batches:
            out_f.append(fl.run(x))
            out_q.append(qu.run(x))
            for q in acts:
                _accumulate(stats[q.name], fl.seen[q.name], qu.seen[q.name], q)
        f, qt = torch.cat(out_f), torch.cat(out_q)
        rows = [_activation_row(q, layers[q.name][0], stats[q.name]) for q in acts]
        rows += [_weight_row(nodes[n], layer) for n, (layer, kind) in layers.items()
                 if kind == "weight"]
        output = _output(f, qt)
        blocks = _blocks(rows)
        sensitivity = _sensitivity(converted, layers, blocks, batches, f, output, candidates)
    return {"images": int(f.shape[0]), "output": output, "tensors": rows, "blocks": blocks,
            "sensitivity": sensitivity,
            "most_sensitive": [s["block"] for s in sensitivity if s["output_sqnr_gain_db"] > GAIN_DB]}


class _Stats:
    def __init__(self):
        self.signal = self.local = self.cumulative = 0.0
        self.hist = np.zeros(256, np.int64)
        self.saturated = self.count = 0


def _fake_quant(x, node):
    """What one quantize -> dequantize round trip of `node`'s parameters makes of x."""
    scale, zp, qmin, qmax = node.args[1], node.args[2], node.args[3], node.args[4]
    q = torch.clamp(torch.round(x / scale) + zp, qmin, qmax)
    return q, (q - zp) * scale


def _sqnr(signal: float, noise: float) -> float:
    return 99.0 if noise <= 0 else min(99.0, 10 * math.log10(max(signal, 1e-30) / noise))


def _accumulate(s: _Stats, a, b, q) -> None:
    """a: the float tensor reaching q in the float graph; b: the int8 graph's."""
    levels, own = _fake_quant(a, q)
    _, cumulative = _fake_quant(b, q)
    s.signal += float((a.double() ** 2).sum())
    s.local += float(((a - own).double() ** 2).sum())
    s.cumulative += float(((a - cumulative).double() ** 2).sum())
    qmin, qmax = int(q.args[3]), int(q.args[4])
    s.hist += np.bincount((levels - qmin).to(torch.int64).flatten().numpy(),
                          minlength=256)[:256]
    s.saturated += int(((levels == qmin) | (levels == qmax)).sum())
    s.count += levels.numel()


def _activation_row(q, layer, s: _Stats) -> dict:
    return {"layer": layer, "tensor": "activation", "node": q.name, "scale": float(q.args[1]),
            "levels_used": int((s.hist > 0).sum()), "saturated_pct": 100 * s.saturated / s.count,
            "sqnr_db": _sqnr(s.signal, s.local),
            "cumulative_sqnr_db": _sqnr(s.signal, s.cumulative)}


def _attr(module, target: str):
    for part in target.split("."):
        module = getattr(module, part)
    return module.detach()


def _weight_row(q, layer) -> dict:
    gm = q.graph.owning_module
    w, scale, zp = (_attr(gm, a.target) for a in q.args[:3])
    axis, qmin, qmax = int(q.args[3]), int(q.args[4]), int(q.args[5])
    shape = [1] * w.ndim
    shape[axis] = -1
    levels = torch.clamp(torch.round(w / scale.reshape(shape)) + zp.reshape(shape), qmin, qmax)
    back = (levels - zp.reshape(shape)) * scale.reshape(shape)
    return {"layer": layer, "tensor": "weight", "node": q.name,
            "scale": [float(scale.min()), float(scale.max())],
            "levels_used": int(torch.unique(levels).numel()), "range": [qmin, qmax],
            "sqnr_db": _sqnr(float((w.double() ** 2).sum()),
                             float(((w - back).double() ** 2).sum()))}


def _output(float_logits, logits) -> dict:
    noise = float(((float_logits - logits).double() ** 2).sum())
    agree = (logits.argmax(-1) == float_logits.argmax(-1)).float().mean()
    return {"sqnr_db": _sqnr(float((float_logits.double() ** 2).sum()), noise),
            "top1_agreement_with_float": float(agree)}


def _blocks(rows) -> list:
    """Per block, in graph order: the cumulative SQNR after it and how much it lost."""
    after = {}
    for r in rows:
        if r["tensor"] == "activation" and r["layer"] != "input":
            after[block_of(r["layer"])] = r["cumulative_sqnr_db"]
    out, before = [], 99.0
    for block, cum in after.items():
        out.append({"block": block, "cumulative_sqnr_db": cum, "lost_db": before - cum})
        before = cum
    return out


def with_float_blocks(converted, layers, blocks, batches, float_logits) -> dict:
    """Output SQNR and agreement of the graph with `blocks` in float (simulated exactly: the
    quantize/dequantize pairs they lose pass values through)."""
    bypass = float_region_quants(converted.graph, layers, blocks)
    with torch.no_grad():
        logits = _outputs(_Probe(converted, bypass), batches)
    return _output(float_logits, logits)


def float_outputs(converted, batches):
    with torch.no_grad():
        return _outputs(_Probe(converted, bypass=True), batches)


def _outputs(probe, batches) -> torch.Tensor:
    """One probe (its weights dequantized once) over every batch."""
    return torch.cat([probe.run(x) for x in batches])


def _sensitivity(converted, layers, blocks, batches, float_logits, output, k) -> list:
    """Output SQNR gained by running each of the k blocks that lose most in float."""
    result = []
    for b in sorted(blocks, key=lambda b: -b["lost_db"])[:k]:
        bypass = float_region_quants(converted.graph, layers, {b["block"]})
        alone = _output(float_logits, _outputs(_Probe(converted, bypass), batches))
        result.append({"block": b["block"], "output_sqnr_if_float_db": alone["sqnr_db"],
                       "output_sqnr_gain_db": alone["sqnr_db"] - output["sqnr_db"],
                       "top1_agreement_if_float": alone["top1_agreement_with_float"]})
    return sorted(result, key=lambda s: -s["output_sqnr_gain_db"])


def summary_lines(report: dict, top: int = 5) -> list:
    """A few lines for the export log: the output error and the blocks that cost most."""
    out = report["output"]
    lines = [f"int8 output SQNR {out['sqnr_db']:.1f} dB, top-1 agreement with float "
             f"{out['top1_agreement_with_float']:.3f} ({report['images']} calibration images)"]
    lost = {b["block"]: b["lost_db"] for b in report["blocks"]}
    worst = {}
    for r in report["tensors"]:
        key = block_of(r["layer"]) if r["layer"] != "input" else "input"
        if r["tensor"] == "activation" and r["sqnr_db"] < worst.get(key, (99, ""))[0]:
            worst[key] = (r["sqnr_db"], r["layer"], r["levels_used"])
    for s in report["sensitivity"][:top]:
        sq, layer, levels = worst.get(s["block"], (float("nan"), "-", "-"))
        lines.append(f"  {s['block']:<14} in float gains {s['output_sqnr_gain_db']:+5.1f} dB; "
                     f"loses {lost.get(s['block'], 0):4.1f} dB; worst tensor {layer} "
                     f"{sq:.1f} dB ({levels} levels)")
    return lines


def plot(report: dict, path) -> None:
    """quant_report.png: each activation's local and cumulative SQNR along the graph, and the
    SQNR each block loses (red: running it in float gains the output most)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.files import atomic_write
    acts = [r for r in report["tensors"] if r["tensor"] == "activation"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7))
    x = list(range(len(acts)))
    ax1.plot(x, [r["cumulative_sqnr_db"] for r in acts], label="cumulative (int8 graph so far)")
    ax1.scatter(x, [r["sqnr_db"] for r in acts], s=10, color="tab:orange",
                label="local (this tensor's own rounding)")
    ax1.set_ylabel("activation SQNR, dB")
    ax1.set_title(f"int8 output SQNR {report['output']['sqnr_db']:.1f} dB, top-1 agreement with "
                  f"float {report['output']['top1_agreement_with_float']:.3f} "
                  f"({report['images']} calibration images)")
    ax1.set_xticks(x[::4], [acts[i]["layer"] for i in x[::4]], rotation=60, fontsize=6,
                   ha="right")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    blocks = report["blocks"]
    hot = set(report.get("most_sensitive", []))
    ax2.bar(range(len(blocks)), [b["lost_db"] for b in blocks],
            color=["tab:red" if b["block"] in hot else "tab:blue" for b in blocks])
    ax2.set_xticks(range(len(blocks)), [b["block"] for b in blocks], rotation=60, fontsize=7,
                   ha="right")
    ax2.set_ylabel("cumulative SQNR lost, dB")
    ax2.set_title("per block (red: in float, the output gains over "
                  f"{GAIN_DB} dB)", fontsize=9)
    ax2.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
