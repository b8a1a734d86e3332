"""Image files -> tensors: the checks that every image decodes, and the one DataLoader builder
every stage uses (one view of each image, or several from one decode for the feature cache),
each augmented view drawn from (seed, image) so it is the same in any process."""
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ..bundle_runner import open_rgb
from ..core.errors import DataError

DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                 Image.DecompressionBombError)


def check_image(path) -> str:
    """'' if the file decodes completely as an image, else why not (a truncated JPEG fails
    here, not halfway through training)."""
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            return "zero-byte file"
        open_rgb(p, 64)                 # the decoder training uses: every check it makes
    except DECODE_ERRORS as e:
        return f"unreadable image ({e.__class__.__name__}: {e})"
    return ""


def find_bad_images(samples: list, workers: int = 8) -> list:
    """[(path, reason)] for every sample that cannot be decoded."""
    paths = [p for p, _ in samples]
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(check_image, paths))
    return [(p, r) for p, r in zip(paths, reasons) if r]


class ImageDataset(torch.utils.data.Dataset):
    """(transformed image, label, index) per sample; an undecodable image is an error, or
    with skip_bad a blank image labelled -1 that the caller drops. With `augment_seed`, sample
    i's random transform draws from a generator seeded by (augment_seed, i): the same view in
    any process, decoded here or in any number of worker processes."""

    def __init__(self, samples: list, transform, draft_size: int, skip_bad: bool = False,
                 augment_seed: int = None):
        self.samples, self.transform, self.draft_size = samples, transform, draft_size
        self.skip_bad, self.augment_seed = skip_bad, augment_seed

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        img, label = self._decoded(i)
        return self._view(img, self.transform, self.augment_seed, i), label, i

    def _decoded(self, i) -> tuple:
        path, label = self.samples[i]
        try:
            return open_rgb(path, self.draft_size), label
        except DECODE_ERRORS as e:
            if not self.skip_bad:
                raise DataError(f"{path}: unreadable image ({e}); restore or remove it (edgetl "
                                "train: --skip-bad-images skips such files)") from e
            return Image.new("RGB", (self.draft_size,) * 2), -1

    @staticmethod
    def _view(img, transform, augment_seed, i):
        if augment_seed is None:
            return transform(img)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(augment_seed * 1_000_003 + i)
            return transform(img)


class ViewsDataset(ImageDataset):
    """(views [V, ...], label, index) per sample: each image decoded once, then view v made
    by transforms[v] drawing from (seeds[v], i), as ImageDataset with augment_seed seeds[v]
    makes it: the same tensors, one decode instead of V."""

    def __init__(self, samples: list, transforms: list, seeds: list, draft_size: int,
                 skip_bad: bool = False):
        super().__init__(samples, None, draft_size, skip_bad)
        self.views = list(zip(transforms, seeds))

    def __getitem__(self, i):
        img, label = self._decoded(i)
        return torch.stack([self._view(img, t, seed, i) for t, seed in self.views]), label, i


def loader(samples, transform, draft_size, batch_size, workers=0, shuffle_seed=None,
           skip_bad=False, sampler=None) -> torch.utils.data.DataLoader:
    """The one DataLoader over image files: decoded in `workers` processes; with
    `shuffle_seed`, shuffled by a generator seeded with it and each sample augmented from it
    (ImageDataset); batches are (images, labels, indices)."""
    shuffle = shuffle_seed is not None
    g = torch.Generator().manual_seed(shuffle_seed) if shuffle else None
    return _data_loader(ImageDataset(samples, transform, draft_size, skip_bad, shuffle_seed),
                        batch_size, workers, shuffle=shuffle and sampler is None,
                        sampler=sampler, generator=g)


def views_loader(samples, transforms, seeds, draft_size, batch_size, workers=0,
                 skip_bad=False) -> torch.utils.data.DataLoader:
    """Batches (views [B, V, ...], labels, indices) of ViewsDataset, in sample order. Its
    decoders' base seed comes from a generator of its own (as loader's does with a seed): the
    global one, which dropout draws from in training, is left as it was."""
    return _data_loader(ViewsDataset(samples, transforms, seeds, draft_size, skip_bad),
                        batch_size, workers, generator=torch.Generator().manual_seed(seeds[0]))


def _data_loader(dataset, batch_size, workers, **order) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size,
                                       num_workers=_decoders(workers), collate_fn=_collate,
                                       **order)


def _decoders(workers: int) -> int:
    """Decoder processes: forked, unless threads that a fork can deadlock are live, as JAX's
    are once litert-torch has loaded it (export): then the images decode in this process. (A
    fork server or spawn would re-run the caller's script in every worker, which breaks
    scripts without a __main__ guard.)"""
    return 0 if "jax" in sys.modules else workers


def _collate(batch):
    x = torch.stack([b[0] for b in batch])
    return x, torch.tensor([b[1] for b in batch]), torch.tensor([b[2] for b in batch])
