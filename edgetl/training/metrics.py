"""Classification metrics from labels and logits."""
import torch

from ..core.intervals import top1


def summarize(logits: torch.Tensor, labels: torch.Tensor, classes: list) -> dict:
    """top1, n, per-class accuracy and the confusion matrix (rows: true, columns: predicted)."""
    pred = logits.argmax(-1)
    k = len(classes)
    cm = torch.zeros((k, k), dtype=torch.long)
    cm.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class = {c: (cm[i, i].item() / cm[i].sum().item()) if cm[i].sum() else None
                 for i, c in enumerate(classes)}
    n = len(labels)
    return {"top1": (pred == labels).float().mean().item() if n else None, "n": n,
            "ci95": top1(int((pred == labels).sum()), n)["ci95"],
            "per_class": per_class, "confusion_matrix": cm.tolist()}
