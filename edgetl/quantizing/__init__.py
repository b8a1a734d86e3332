"""The int8 decision, a stage of its own between training and export: one set of int8 scales
made on the PyTorch 2 export graph (QAT or PTQ), judged against fp32 on the validation split,
mitigated within the budget, reported, and saved for every format the export builds.

  nodes         the node kinds of a PT2E graph that the passes below treat alike
  quantize      the quantizer (symmetric int8, zero point 0) and its graph passes
  compat        shims for upstream PT2E/litert-torch behaviour
  calibration   class-balanced, seeded calibration sets, recorded and replayable
  qat           calibration, distillation QAT, conversion
  layers        which block a graph node belongs to; float regions
  quant_report  per-tensor scales, saturation, SQNR; per-block sensitivity
  references    PyTorch references: logits of the float model and of the int8 graph
  ranker        which block gains the output most when it runs in float
  graph         the int8 graph saved and rebuilt
  decision      the restorer loop: base graph, mitigation ladder, the decision record
"""
