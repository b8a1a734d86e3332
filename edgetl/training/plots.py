"""Plots a person would rather look at than read."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.files import atomic_write  # noqa: E402


def training_curves(history: list, path) -> None:
    """Loss and validation top-1 per epoch, with the best epoch marked."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    ax1.set_xlabel("epoch"); ax1.set_ylabel("loss"); ax1.legend()
    ax2.plot(epochs, [h["train_top1"] for h in history], label="train top-1")
    ax2.plot(epochs, [h["val_top1"] for h in history], label="val top-1")
    best = max(history, key=lambda h: h["val_top1"])
    ax2.axvline(best["epoch"] + 1, color="grey", ls="--", label=f"best {best['val_top1']:.3f}")
    ax2.set_xlabel("epoch"); ax2.set_ylabel("top-1"); ax2.legend()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
