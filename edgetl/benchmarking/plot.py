"""latency_vs_accuracy.png: each measured row at (p50 latency, held-out top-1), named in a
legend (not on the points, where close builds' labels would overlap)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.files import atomic_write  # noqa: E402

MARKERS = {"onnxruntime": "o", "litert": "s", "tflite-runtime": "D", "tensorrt": "^", "executorch": "P",
           "torch": "x"}


def latency_vs_accuracy(result: dict, path) -> None:
    rows = [r for r in result["results"] if r["status"] == "ok"
            and (r.get("latency_ms") or {}).get("p50")
            and (r.get("held_out_top1") is not None or r.get("top1") is not None)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, r in enumerate(rows):
        top1 = r["held_out_top1"] if r.get("held_out_top1") is not None else r["top1"]
        source = "held-out" if r.get("held_out_top1") is not None else "bundle set"
        ax.scatter(r["latency_ms"]["p50"], top1, s=60, color=plt.cm.tab10(i % 10),
                   marker=MARKERS.get(r["runtime"], "o"),
                   label=f"{r['build']} ({r['runtime']}): {r['latency_ms']['p50']:.2f} ms, "
                         f"{top1:.3f}{'' if source == 'held-out' else ' (bundle set)'}")
    ax.set_xlabel(f"p50 latency, ms (batch {result['settings']['batch']}, "
                  f"{result['settings']['threads']} threads)")
    ax.set_ylabel("top-1 on the held-out split")
    ax.set_title(f"latency vs accuracy on {result['machine'].get('device')}")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)


def sustained(row: dict, path) -> None:
    """p50 per window of a sustained run (and the hottest thermal zone where the device has
    one): throttling shows as a p50 that climbs while the temperature does."""
    windows = row["sustained"]
    t = [w["t_s"] for w in windows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [w["p50"] for w in windows], marker="o", label="p50")
    ax.plot(t, [w["p90"] for w in windows], marker=".", alpha=0.6, label="p90")
    ax.set_xlabel("seconds of continuous running")
    ax.set_ylabel("latency per window, ms")
    ax.set_title(f"sustained: {row['build']} ({row['runtime']}), p50 drift "
                 f"{row['sustained_drift_pct']:+.1f}% first to last window")
    ax.grid(alpha=0.3)
    temps = [w.get("temperature_c_max") for w in windows]
    if any(v is not None for v in temps):
        twin = ax.twinx()
        twin.plot(t, temps, color="tab:red", alpha=0.5, label="max temperature")
        twin.set_ylabel("hottest thermal zone, C")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
