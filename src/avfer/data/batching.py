"""Length-bucketed batches of clips: clips of similar length share a batch, so a long clip does
not pad a whole batch of short ones.

:class:`LengthBatchSampler` (for ``DataLoader(batch_sampler=...)``): per epoch, shuffled
(``shuffle``) clips are taken in pools of ``pool`` batches, each pool sorted by length and cut
into batches, and the batches shuffled; without ``shuffle`` the clips are sorted by length
(:meth:`order` maps the predictions back). The ``generator`` is re-seeded every epoch by
:func:`avfer.train.fit`, so resumed runs draw the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class LengthBatchSampler(Sampler[list[int]]):
    """Batches of at most ``batch_size`` item indices of similar ``lengths``."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = False, pool: int = 50, seed: int = 0
    ) -> None:
        self.lengths = np.asarray(lengths, np.int64)
        self.batch_size, self.shuffle, self.pool = max(1, int(batch_size)), shuffle, max(1, int(pool))
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def _batches(self) -> list[np.ndarray]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = self.order()
            return [order[i : i + bs] for i in range(0, n, bs)]
        perm = torch.randperm(n, generator=self.generator).numpy()
        batches = []
        for start in range(0, n, bs * self.pool):
            part = perm[start : start + bs * self.pool]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + bs] for i in range(0, len(part), bs)]
        return [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]

    def order(self) -> np.ndarray:
        """Item indices in the order of the unshuffled batches (by length, stable)."""
        return np.argsort(self.lengths, kind="stable")

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            yield batch.tolist()
