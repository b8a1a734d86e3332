"""PyTorch eager fp32 as a baseline row: the run's checkpoint, loaded once and timed like the
builds, on the same real images as the fp32 bundle. It runs inside edgetl's own process, so it
has no peak memory of its own to report."""
import os
import time

import numpy as np

from .. import bundle_runner
from ..core.errors import RunError
from ..models import load_checkpoint


class TorchBaseline:
    def __init__(self, checkpoint, bundles, threads, batch):
        import torch
        torch.set_num_threads(threads or torch.get_num_threads())
        self.torch, self.threads, self.batch = torch, threads, batch
        self.checkpoint = checkpoint
        self.model = load_checkpoint(checkpoint)[0].eval()
        found = [(f, m) for _, f, m in bundles if m.get("precision") == "fp32"
                 and m.get("input", {}).get("layout") == "NCHW"]
        if not found:
            raise RunError("the PyTorch baseline needs an fp32 build's evaluation set, and this "
                           "export has none: export with --precision fp32,... or pass "
                           "--runtimes without torch")
        folder, self.manifest = found[0]
        self.data = dict(np.load(folder / "eval.npz"))
        images = self.data["images"]
        self.x = self._input(np.resize(images, (batch,) + images.shape[1:]))

    def _input(self, images):
        return self.torch.from_numpy(bundle_runner.to_input(images, self.manifest))

    def measure(self, warmup, iters, min_seconds, score=True) -> dict:
        images, labels = self.data["images"], self.data["labels"]
        with self.torch.inference_mode():
            t0 = time.perf_counter()
            self.model(self.x)
            first = (time.perf_counter() - t0) * 1000
            latency = bundle_runner.time_runs(lambda: self.model(self.x), warmup, iters,
                                              min_seconds, 1)
            preds = np.concatenate([self.model(self._input(images[i:i + 64])).argmax(-1)
                                    .numpy() for i in range(0, len(images), 64)]) \
                if score else None
        reference = self.data.get("reference")
        return {"format": "pytorch", "precision": "fp32", "runtime": "torch",
                "runtime_version": self.torch.__version__, "provider": "eager CPU",
                "threads": self.threads, "batch": self.batch,
                "top1": None if preds is None else float((preds == labels).mean()),
                "n": len(labels), "top1_agreement": None if preds is None or reference is None
                else float((preds == reference).mean()), "load_ms": None,
                "first_inference_ms": first, "latency_ms": latency,
                "peak_rss_mb": None,   # timed inside edgetl: its peak is edgetl's, not this row's
                "size_bytes": os.path.getsize(self.checkpoint),
                "macs": self.manifest.get("macs"), "variant": ""}
