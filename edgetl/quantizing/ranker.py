"""The ranker of the mitigation ladder: which block, run in float beside those already in
float, gains the int8 graph's output most (its SQNR against the float model, measured on the
calibration images; greedy, one block per step)."""
from . import quant_report


def best_float_block(converted, candidates, chosen, probe, reference) -> tuple:
    """(block, output SQNR in dB with it in float) among `candidates` not yet `chosen`."""
    layers = quant_report.tensor_layers(converted)
    gain = {b: quant_report.with_float_blocks(converted, layers, list(chosen) + [b], probe,
                                              reference)["sqnr_db"]
            for b in candidates if b not in chosen}
    best = max(gain, key=gain.get)
    return best, gain[best]
