"""Training and inference batches from rows that stay on disk (h5py datasets, NumPy memmaps).

An on-disk input is never loaded whole. Its rows are cut into contiguous
*blocks* of :attr:`OnDiskRows.block_rows` rows, aligned to the HDF5 chunks
(about 1 MiB each; small inputs get at least 64 blocks, aligned or not),
because whole chunks read in one call are an order of magnitude faster than
scattered rows. Each training epoch:

1. the training blocks are put in an order drawn from ``(seed, epoch)``;
2. consecutive blocks of that order fill a *window* (the shuffle buffer, at
   most :data:`BUFFER_BYTES`, in the stored dtype for float16/float32);
3. the window's rows are permuted (again from ``(seed, epoch, window)``) and
   cut into batches; the last batch of a window may be short.

So memory is bounded by one window and one batch, not by the number of rows,
and an epoch reads every training row once. Validation rows are whole blocks
held out at random (from the seed), so the split costs no extra reads.
Non-finite values are checked block by block the first time a block is read;
the error names the row.

The interface, for a data-parallel fit to reuse
-----------------------------------------------

:class:`BlockBatches` is a map-style :class:`torch.utils.data.Dataset` whose
item ``i`` is the ``i``-th batch of the current epoch: a CPU tensor of shape
``(rows, n_features)`` in the buffer's dtype (float16 or float32; cast it with
``.float()`` after the copy to the device). ``len()`` is the number of batches
of the current epoch and ``set_epoch(epoch)`` draws that epoch's order, so it
can be served by ``DataLoader(batches, batch_size=None)`` with a sequential
sampler (and ``pin_memory=True`` on CUDA). The batches of one window are
consecutive ids (:meth:`BlockBatches.window_batches`) and the dataset keeps
one window loaded, so a sampler that hands each rank whole windows reads
every row once over all ranks; one that deals ids out in turn makes every rank read every window.
h5py datasets do not pickle: use no DataLoader workers, or reopen the file in
each worker (on two cores, workers were slower than none).
:class:`StreamingBatches` is the single-process iterator that skorch drives:
it calls ``set_epoch`` at each pass and yields ``(x, None)`` on the device, in
float32. A fit draws its epochs ``0, 1, ...`` from one seed, so a partial fit
or a distributed fit that derives the same ``(seed, epoch)`` gets the same
order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback

from ._blocks import check_finite, check_on_disk, read_rows
from ._training import PRE_BIAS_SAMPLE_ROWS

__all__ = [
    "OnDiskRows",
    "BlockSplit",
    "BlockBatches",
    "StreamingBatches",
    "PreBiasFromSample",
]

BLOCK_BYTES = 1 << 20
"""Target size of one read: about 1 MiB, a whole number of HDF5 chunks (h5py's default chunk cache is 1 MiB)."""

MIN_BLOCKS = 64
"""Small inputs are cut into at least this many blocks, so held-out blocks give a fine-grained split."""

BUFFER_BYTES = 128 << 20
"""Size of the shuffle buffer: the rows of this many bytes of blocks are mixed before batches are cut."""

_STORED_AS_IS = (np.dtype(np.float16), np.dtype(np.float32))


def _buffer_dtype(dtype) -> np.dtype:
    """float16 and float32 rows are buffered as stored (cast per batch); anything else as float32 on reading."""
    dtype = np.dtype(dtype)
    return dtype if dtype in _STORED_AS_IS else np.dtype(np.float32)


def _default_block_rows(source, n_rows: int, row_bytes: int) -> int:
    chunks = getattr(source, "chunks", None)
    chunk_rows = int(chunks[0]) if chunks else 1
    per_block = max(1, BLOCK_BYTES // max(chunk_rows * row_bytes, 1))
    block_rows = chunk_rows * per_block
    return max(1, min(block_rows, math.ceil(n_rows / MIN_BLOCKS)))


class OnDiskRows(torch.utils.data.Dataset):
    """The rows of a 2-D on-disk array, cut into contiguous blocks that are read one at a time.

    Parameters
    ----------
    source : h5py.Dataset or numpy.memmap of shape (n_rows, n_features)
        Real numbers (float or integer dtype).
    block_rows : int, default=None
        Rows per block; ``None`` picks whole HDF5 chunks, about 1 MiB, and
        at least :data:`MIN_BLOCKS` blocks.
    """

    def __init__(self, source, block_rows=None, *, min_rows=2):
        self.source = source
        self.n_rows, self.n_features = check_on_disk(source, min_rows=min_rows)
        self.dtype = _buffer_dtype(source.dtype)
        row_bytes = self.n_features * np.dtype(source.dtype).itemsize
        self.block_rows = int(block_rows or _default_block_rows(source, self.n_rows, row_bytes))
        self.n_blocks = math.ceil(self.n_rows / self.block_rows)
        self._checked = np.zeros(self.n_blocks, dtype=bool)

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, index):
        raise TypeError("OnDiskRows is read through BlockBatches, one block at a time, not row by row.")

    def block_bounds(self, block: int) -> tuple[int, int]:
        start = block * self.block_rows
        return start, min(start + self.block_rows, self.n_rows)

    def block_sizes(self, blocks) -> np.ndarray:
        blocks = np.asarray(blocks, dtype=np.int64)
        return np.minimum((blocks + 1) * self.block_rows, self.n_rows) - blocks * self.block_rows

    def read_block(self, block: int, out: np.ndarray) -> int:
        """Read one block into the start of ``out``; return its number of rows."""
        start, stop = self.block_bounds(block)
        read_rows(self.source, start, stop, out)
        if not self._checked[block]:
            check_finite(out[: stop - start], start)
            self._checked[block] = True
        return stop - start

    def sample(self, n_rows: int, rng: np.random.Generator) -> torch.Tensor:
        """Up to ``n_rows`` rows (float32) drawn from blocks taken at random, about four rows read per row kept."""
        picked, n_read = [], 0
        for block in rng.permutation(self.n_blocks):
            picked.append(int(block))
            n_read += int(self.block_sizes([block])[0])
            if n_read >= 4 * n_rows:
                break
        buffer = np.empty((n_read, self.n_features), dtype=self.dtype)
        offset = 0
        for block in sorted(picked):
            offset += self.read_block(block, buffer[offset:])
        keep = np.sort(rng.choice(n_read, size=min(n_rows, n_read), replace=False))
        return torch.from_numpy(buffer[keep].astype(np.float32))


class BlockSplit:
    """skorch ``train_split`` for :class:`OnDiskRows`: whole blocks held out for validation, drawn from ``seed``.

    Holding out blocks instead of rows costs no extra reads: each epoch reads
    every row once, as training or as validation.

    Parameters
    ----------
    validation_fraction : float
        Share of the blocks (so, up to one block, of the rows) held out.
    seed : int
        Seeds the choice of held-out blocks and the training order.
    """

    def __init__(self, validation_fraction: float, seed: int):
        self.validation_fraction = validation_fraction
        self.seed = seed

    def blocks(self, rows: OnDiskRows) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation block ids, each sorted."""
        n_valid = math.ceil(self.validation_fraction * rows.n_blocks)
        if n_valid >= rows.n_blocks:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} holds out all {rows.n_blocks} blocks of "
                f"{rows.block_rows} rows of the input; lower it, or give more rows."
            )
        order = np.random.default_rng([self.seed, 0x5EED]).permutation(rows.n_blocks)
        return np.sort(order[n_valid:]), np.sort(order[:n_valid])

    def __call__(self, dataset, y=None, **fit_params):
        train, valid = self.blocks(dataset)
        return BlockSubset(dataset, train, self.seed), (BlockSubset(dataset, valid, self.seed) if len(valid) else None)


class BlockSubset(torch.utils.data.Dataset):
    """Some blocks of an :class:`OnDiskRows`: what the split hands to the batch iterators."""

    def __init__(self, rows: OnDiskRows, blocks, seed: int):
        self.rows = rows
        self.blocks = np.asarray(blocks, dtype=np.int64)
        self.seed = seed

    def __len__(self) -> int:
        return int(self.rows.block_sizes(self.blocks).sum())

    def __getitem__(self, index):
        raise TypeError("BlockSubset is read through BlockBatches, one block at a time, not row by row.")


class BlockBatches(torch.utils.data.Dataset):
    """Map-style dataset of the batches of one epoch: item ``i`` is batch ``i`` (a CPU tensor).

    Parameters
    ----------
    rows : OnDiskRows
        The on-disk input.
    blocks : array-like of int
        The blocks to serve (training or validation).
    batch_size : int
        Rows per batch; a window's last batch may be shorter.
    shuffle : bool, default=False
        Draw the block order and the order of rows within each window from
        ``(seed, epoch)``; otherwise blocks and rows come in file order.
    seed : int, default=0
    buffer_bytes : int, default=BUFFER_BYTES
        Upper bound on the shuffle buffer (at least one block and one batch).
    """

    def __init__(self, rows, blocks, batch_size, *, shuffle=False, seed=0, buffer_bytes=BUFFER_BYTES):
        self.rows = rows
        self.blocks = np.asarray(blocks, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        row_bytes = rows.n_features * rows.dtype.itemsize
        buffer_rows = max(self.batch_size, buffer_bytes // row_bytes)
        self.blocks_per_window = max(1, buffer_rows // rows.block_rows)
        self._buffer = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Lay out the batches of ``epoch``: the block order and the windows it fills."""
        self.epoch = epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(self.blocks) if self.shuffle else self.blocks
        self._windows = [order[i : i + self.blocks_per_window] for i in range(0, len(order), self.blocks_per_window)]
        window_rows = np.array([self.rows.block_sizes(window).sum() for window in self._windows], dtype=np.int64)
        self._first_batch = np.concatenate([[0], np.cumsum(-(-window_rows // self.batch_size))])
        self._loaded = None  # (window id, row order within the buffer)

    def __len__(self) -> int:
        return int(self._first_batch[-1])

    def window_batches(self) -> list[range]:
        """The batch ids of each window of the current epoch: the units to shard over ranks."""
        return [range(int(a), int(b)) for a, b in zip(self._first_batch[:-1], self._first_batch[1:])]

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for an epoch of {len(self)} batches")
        window = int(np.searchsorted(self._first_batch, index, side="right")) - 1
        if self._loaded is None or self._loaded[0] != window:
            self._load_window(window)
        _, order, n_rows = self._loaded
        start = (index - int(self._first_batch[window])) * self.batch_size
        stop = min(start + self.batch_size, n_rows)
        rows = torch.from_numpy(self._buffer[:n_rows])
        # A copy either way: the buffer is overwritten by the next window while the batch may still be in use.
        return rows[start:stop].clone() if order is None else rows.index_select(0, order[start:stop])

    def _load_window(self, window: int) -> None:
        blocks = self._windows[window]
        if self._buffer is None:
            largest_blocks = np.sort(self.rows.block_sizes(self.blocks))[::-1][: self.blocks_per_window]
            capacity = int(largest_blocks.sum())  # no larger than the rows served, for small inputs
            self._buffer = np.empty((capacity, self.rows.n_features), dtype=self.rows.dtype)
        n_rows = 0
        for block in np.sort(blocks):  # file order within a window: sequential reads
            n_rows += self.rows.read_block(int(block), self._buffer[n_rows:])
        order = None
        if self.shuffle:
            window_seed = int(np.random.default_rng([self.seed, self.epoch, window]).integers(2**62))
            generator = torch.Generator().manual_seed(window_seed)
            order = torch.randperm(n_rows, generator=generator)
        self._loaded = (window, order, n_rows)

    def release(self) -> None:
        """Drop the buffer (it is allocated again on the next read)."""
        self._buffer = None
        self._loaded = None


class StreamingBatches:
    """skorch iterator over :class:`BlockBatches`: one epoch per pass, batches as float32 on the device.

    Takes what :class:`BlockSplit` returns, in skorch's iterator signature.
    """

    def __init__(self, dataset, batch_size, shuffle=False, device="cpu", first_epoch=0):
        if isinstance(dataset, OnDiskRows):  # no validation split: every block trains
            dataset = BlockSubset(dataset, np.arange(dataset.n_blocks), seed=0)
        self.batches = BlockBatches(dataset.rows, dataset.blocks, batch_size, shuffle=shuffle, seed=dataset.seed)
        self.device = torch.device(device)
        self.epoch = first_epoch  # a resumed fit continues the epochs, and so their orders, of the one it resumes

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        self.batches.set_epoch(self.epoch)
        self.epoch += 1
        on_cuda = self.device.type == "cuda"
        for index in range(len(self.batches)):
            batch = self.batches[index]
            if on_cuda:
                batch = batch.pin_memory().to(self.device, non_blocking=True)
            yield batch.to(self.device).float(), None
        self.batches.release()  # the fitted net must not keep a window of data alive


class PreBiasFromSample(Callback):
    """Start ``pre_bias`` at the centre of a sample of rows drawn before training (rows that stay on disk).

    The sample is dropped once used, so the fitted net does not carry it.
    """

    def __init__(self, method, sample=None):
        self.method = method
        self.sample = sample

    def on_train_begin(self, net, **kwargs):
        if self.sample is not None:
            net.module_.init_pre_bias_(self.sample.to(net.device), method=self.method)
            self.sample = None


def initial_sample(rows: OnDiskRows, seed: int) -> torch.Tensor:
    """The rows a fit on ``rows`` starts from: ``pre_bias``'s centre and the spread behind ``lr="auto"``."""
    return rows.sample(PRE_BIAS_SAMPLE_ROWS, np.random.default_rng([seed, 0xB1A5]))


def configure_net(
    net, rows: OnDiskRows, *, validation_fraction: float, seed: int, pre_bias_init: str, first_epoch: int = 0,
    sample: torch.Tensor | None = None,
) -> None:
    """Make a net built for in-memory data read ``rows`` from disk: split, iterators and pre-bias start.

    ``first_epoch`` is the number of the first epoch the fit runs (not 0 when
    it resumes a checkpoint), which draws that epoch's block order. ``sample``
    is :func:`initial_sample`'s, when the caller has already read it.
    """
    if sample is None:
        sample = initial_sample(rows, seed)
    net.callbacks = [
        (name, PreBiasFromSample(pre_bias_init, sample) if name == "init_pre_bias" else callback)
        for name, callback in net.callbacks
    ]
    net.set_params(
        train_split=BlockSplit(validation_fraction, seed),
        iterator_train=StreamingBatches,
        iterator_train__first_epoch=first_epoch,
        iterator_valid=StreamingBatches,
    )


def train_batches_per_epoch(rows: OnDiskRows, *, validation_fraction: float, seed: int, batch_size: int) -> int:
    """Training batches of the first epoch, for the LR schedule (later epochs differ by a batch at most)."""
    train, _ = BlockSplit(validation_fraction, seed).blocks(rows)
    return len(BlockBatches(rows, train, batch_size, shuffle=True, seed=seed))
