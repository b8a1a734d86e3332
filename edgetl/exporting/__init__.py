"""Export stage: RUN/train/ -> RUN/export/ (exporter.export). Quantization once (QAT or PTQ),
one module per format, parity in each build's own runtime, deployment bundles."""
