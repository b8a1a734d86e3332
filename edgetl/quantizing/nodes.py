"""The node kinds of a PT2E graph, in one place: the passes that share scales and the ones
that find the layer a tensor belongs to treat the same ops alike."""

QUANT_OPS = ("quantize_per_tensor", "quantize_per_channel")
DEQUANT_OPS = ("dequantize_per_tensor", "dequantize_per_channel")
PER_TENSOR = ("quantize_per_tensor", "dequantize_per_tensor")
# ops that move values without computing new ones: their output shares their input's scale,
# and a tensor passed through them still belongs to the layer that produced it
MOVES_VALUES = frozenset({"constant_pad_nd.default", "pad.default", "clone.default",
                          "dropout.default", "contiguous.default"})
