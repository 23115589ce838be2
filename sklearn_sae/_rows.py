"""Where training rows come from: rows in memory or on disk, behind one interface.

A fit, a ``partial_fit`` call and a data-parallel fit all train on a *rows*
object, :class:`InMemoryRows` (one float32 tensor) or :class:`OnDiskRows` (an
h5py dataset or a NumPy memmap, never loaded whole), which offers:

- ``split(validation_fraction, seed)``: training and validation rows (whole
  blocks for on-disk rows, so the split costs no extra reads);
- ``epoch(batch_size, seed=, epoch=, shuffle=, num_processes=)``: the batches
  of one epoch, a map-style data set whose item ``i`` is batch ``i`` (a CPU
  tensor) and whose ``units()`` group the batch ids that are read together;
- ``sample(n_rows, seed)``: rows drawn to start ``pre_bias`` and to measure
  the spread behind ``lr="auto"`` (a fit draws them from its training rows,
  the first half of ``split``, so that the validation rows stay held out).

One epoch-order scheme serves every source and every mode: the order of an
epoch is drawn from ``numpy.random.default_rng([seed, epoch])`` (rows in
memory; blocks on disk, whose rows are then mixed within a window from
``[seed, epoch, window]``), so a resumed fit, a ``partial_fit`` run and every
process of a data-parallel fit derive the same order from the same numbers
without communicating. :class:`EpochIterator` is the one skorch iterator: at
each pass it lays out the net's current epoch and yields the batches the net
takes (all of them, or one process's share, :func:`share_batches`).

On disk, rows are cut into contiguous *blocks* of :attr:`OnDiskRows.block_rows`
rows aligned to the HDF5 chunks (about 1 MiB; small inputs get at least 64
blocks), because whole chunks read in one call are an order of magnitude
faster than scattered rows. Consecutive blocks of an epoch's order fill a
*window* (the shuffle buffer, at most :data:`BUFFER_BYTES`, kept in the stored
dtype for float16/float32) whose rows are permuted and cut into batches, so
memory is bounded by one window and one batch. Non-finite values are checked
block by block the first time a block is read; the error names the row.
h5py datasets do not pickle: read them in the process that opened them.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset

from ._blocks import check_on_disk, check_values, read_rows

__all__ = [
    "InMemoryRows",
    "OnDiskRows",
    "BlockBatches",
    "RowsSplit",
    "EpochIterator",
    "share_batches",
]

SPLIT_STREAM = 0x5EED
"""Second word of the seed of the validation split (the first is the fit's seed)."""

SAMPLE_STREAM = 0xB1A5
"""Second word of the seed of the sample that starts ``pre_bias`` and measures the spread."""

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


class InMemoryRows(Dataset):
    """Rows of one float32 tensor, or a subset of them (after a split).

    Parameters
    ----------
    X : torch.Tensor of shape (n_rows, n_features)
        float32, on the CPU; not copied (pass a private copy).
    indices : array-like of int, default=None
        The rows of ``X`` these rows are, in increasing order; ``None`` for all.
    """

    def __init__(self, X: torch.Tensor, indices=None):
        self.X = X
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.n_features = int(X.shape[1])

    @property
    def n_rows(self) -> int:
        return len(self.X) if self.indices is None else len(self.indices)

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, index):
        raise TypeError("InMemoryRows is read through epoch(), a batch at a time, not row by row.")

    def split(self, validation_fraction: float, seed: int):
        """``(training rows, validation rows or None)``: ``ceil(validation_fraction * n_rows)`` rows held out."""
        n_valid = math.ceil(validation_fraction * self.n_rows)
        if n_valid == 0:
            return self, None
        order = np.random.default_rng([seed, SPLIT_STREAM]).permutation(self.n_rows)
        own = np.arange(self.n_rows) if self.indices is None else self.indices
        return InMemoryRows(self.X, np.sort(own[order[n_valid:]])), InMemoryRows(self.X, np.sort(own[order[:n_valid]]))

    def epoch(self, batch_size: int, *, seed: int, epoch: int, shuffle: bool, num_processes: int = 1):
        """The batches of one epoch; every batch is a unit of its own (rows in memory cost nothing to share)."""
        rows = self.indices
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(self.n_rows)
            rows = order if rows is None else rows[order]
        return _TensorBatches(self.X, None if rows is None else torch.from_numpy(rows), batch_size)

    def sample(self, n_rows: int, seed: int) -> torch.Tensor:
        """Up to ``n_rows`` rows, all of them when there are no more, else drawn without replacement."""
        rows = np.arange(self.n_rows) if self.indices is None else self.indices
        if len(rows) > n_rows:
            rows = np.sort(np.random.default_rng([seed, SAMPLE_STREAM]).choice(rows, n_rows, replace=False))
        return self.X if len(rows) == len(self.X) else self.X[torch.from_numpy(rows)]


class _TensorBatches:
    """The batches of one epoch of rows in memory: batch ``i`` is one indexing of the tensor."""

    def __init__(self, X: torch.Tensor, rows: torch.Tensor | None, batch_size: int):
        self.X, self.rows, self.batch_size = X, rows, batch_size

    def __len__(self) -> int:
        return math.ceil((len(self.X) if self.rows is None else len(self.rows)) / self.batch_size)

    def __getitem__(self, index: int) -> torch.Tensor:
        start = index * self.batch_size
        if self.rows is None:
            return self.X[start : start + self.batch_size]
        return self.X[self.rows[start : start + self.batch_size]]

    def units(self) -> list[range]:
        return [range(index, index + 1) for index in range(len(self))]

    def expect(self, batch_ids) -> None:
        pass  # nothing to read ahead

    def release(self) -> None:
        pass


class OnDiskRows(Dataset):
    """The rows of a 2-D on-disk array, cut into contiguous blocks that are read one at a time.

    Parameters
    ----------
    source : h5py.Dataset or numpy.memmap of shape (n_rows, n_features)
        Real numbers (float or integer dtype).
    block_rows : int, default=None
        Rows per block; ``None`` picks whole HDF5 chunks, about 1 MiB, and
        at least :data:`MIN_BLOCKS` blocks.
    min_rows : int, default=2
        Fewer rows than this is an error.

    Attributes
    ----------
    blocks : ndarray of int
        The blocks these rows are (all of them, or one side of a split).
    """

    def __init__(self, source, block_rows=None, *, min_rows=2):
        self.source = source
        self.n_source_rows, self.n_features = check_on_disk(source, min_rows=min_rows)
        self.dtype = _buffer_dtype(source.dtype)
        row_bytes = self.n_features * np.dtype(source.dtype).itemsize
        self.block_rows = int(block_rows or _default_block_rows(source, self.n_source_rows, row_bytes))
        self.n_blocks = math.ceil(self.n_source_rows / self.block_rows)
        self.blocks = np.arange(self.n_blocks)
        self._checked = np.zeros(self.n_blocks, dtype=bool)  # shared with subsets: a block is checked once

    @property
    def n_rows(self) -> int:
        return int(self.block_sizes(self.blocks).sum())

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, index):
        raise TypeError("OnDiskRows is read through epoch(), one window of blocks at a time, not row by row.")

    def block_bounds(self, block: int) -> tuple[int, int]:
        start = block * self.block_rows
        return start, min(start + self.block_rows, self.n_source_rows)

    def block_sizes(self, blocks) -> np.ndarray:
        blocks = np.asarray(blocks, dtype=np.int64)
        return np.minimum((blocks + 1) * self.block_rows, self.n_source_rows) - blocks * self.block_rows

    def read_block(self, block: int, out: np.ndarray) -> int:
        """Read one block into the start of ``out``; return its number of rows."""
        start, stop = self.block_bounds(block)
        read_rows(self.source, start, stop, out)
        if not self._checked[block]:
            check_values(out[: stop - start], start)
            self._checked[block] = True
        return stop - start

    def subset(self, blocks) -> "OnDiskRows":
        """These rows restricted to ``blocks`` (same source, same block checks)."""
        subset = copy.copy(self)
        subset.blocks = np.sort(np.asarray(blocks, dtype=np.int64))
        return subset

    def split(self, validation_fraction: float, seed: int):
        """``(training rows, validation rows or None)``: whole blocks held out at random, so no extra reads."""
        n_valid = math.ceil(validation_fraction * len(self.blocks))
        if n_valid >= len(self.blocks):
            raise ValueError(
                f"validation_fraction={validation_fraction} holds out all {len(self.blocks)} blocks of "
                f"{self.block_rows} rows of the input; lower it, or give more rows."
            )
        if n_valid == 0:
            return self, None
        order = np.random.default_rng([seed, SPLIT_STREAM]).permutation(self.blocks)
        return self.subset(order[n_valid:]), self.subset(order[:n_valid])

    def epoch(self, batch_size: int, *, seed: int, epoch: int, shuffle: bool, num_processes: int = 1):
        """The batches of one epoch, in windows of nearly equal size, a multiple of ``num_processes`` of them.

        Each process then takes whole windows and reads only those. A window
        never grows past :data:`BUFFER_BYTES`.
        """
        widest = BlockBatches(self, self.blocks, batch_size, shuffle=False).blocks_per_window
        n_windows = num_processes * max(1, math.ceil(len(self.blocks) / (num_processes * widest)))
        blocks_per_window = max(1, math.ceil(len(self.blocks) / n_windows))
        row_bytes = self.n_features * self.dtype.itemsize
        batches = BlockBatches(
            self, self.blocks, batch_size, shuffle=shuffle, seed=seed,
            buffer_bytes=blocks_per_window * self.block_rows * row_bytes,
        )
        batches.set_epoch(epoch)
        return batches

    def sample(self, n_rows: int, seed: int) -> torch.Tensor:
        """Up to ``n_rows`` rows (float32) drawn from blocks taken at random, about four rows read per row kept."""
        rng = np.random.default_rng([seed, SAMPLE_STREAM])
        picked, n_read = [], 0
        for block in rng.permutation(self.blocks):
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


class BlockBatches(torch.utils.data.Dataset):
    """Map-style dataset of the batches of one epoch: item ``i`` is batch ``i`` (a CPU tensor).

    The rows of a window are read into a buffer, permuted and cut into
    batches. While one window's batches are served, a reader thread reads
    the next window into a second buffer (NumPy's copies, casts and h5py's
    reads run outside the GIL while the training step computes), so a fit
    waits for the disk only when the disk is slower than training. The
    batches, their order and their values do not depend on the read-ahead.

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
    buffer_bytes : int, default=None
        Upper bound on one window's buffer (at least one block and one batch);
        None is :data:`BUFFER_BYTES`. Reading ahead holds two.
    read_ahead : bool, default=True
        Read the next window in a background thread.
    """

    def __init__(self, rows, blocks, batch_size, *, shuffle=False, seed=0, buffer_bytes=None, read_ahead=True):
        self.rows = rows
        self.blocks = np.asarray(blocks, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.read_ahead = read_ahead
        row_bytes = rows.n_features * rows.dtype.itemsize
        buffer_rows = max(self.batch_size, (buffer_bytes or BUFFER_BYTES) // row_bytes)
        self.blocks_per_window = max(1, buffer_rows // rows.block_rows)
        self._buffer = None  # the buffer of the window being served
        self._spare = None  # the other one, which the reader fills
        self._reader = None  # a one-thread executor, created on the first read ahead
        self._pending = None  # (window, buffer, future of (order, n_rows))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Lay out the batches of ``epoch``: the block order and the windows it fills."""
        self._cancel_pending()
        self.epoch = epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(self.blocks) if self.shuffle else self.blocks
        self._windows = [order[i : i + self.blocks_per_window] for i in range(0, len(order), self.blocks_per_window)]
        window_rows = np.array([self.rows.block_sizes(window).sum() for window in self._windows], dtype=np.int64)
        self._first_batch = np.concatenate([[0], np.cumsum(-(-window_rows // self.batch_size))])
        self._loaded = None  # (window id, row order within the buffer, rows)
        self.expect(range(len(self)))

    def __len__(self) -> int:
        return int(self._first_batch[-1])

    def units(self) -> list[range]:
        """The batch ids of each window of the current epoch: the units shared among processes."""
        return [range(int(a), int(b)) for a, b in zip(self._first_batch[:-1], self._first_batch[1:])]

    def expect(self, batch_ids) -> None:
        """Say in which order the batches will be asked for (all of them by default), to read the right window ahead."""
        windows = np.searchsorted(self._first_batch, np.asarray(list(batch_ids), dtype=np.int64), side="right") - 1
        self._visits = [int(w) for i, w in enumerate(windows) if i == 0 or w != windows[i - 1]]
        self._cursor = 0

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
        # A copy either way: the buffer is overwritten by a later window while the batch may still be in use.
        return rows[start:stop].clone() if order is None else rows.index_select(0, order[start:stop])

    def _new_buffer(self) -> np.ndarray:
        largest_blocks = np.sort(self.rows.block_sizes(self.blocks))[::-1][: self.blocks_per_window]
        capacity = int(largest_blocks.sum())  # no larger than the rows served, for small inputs
        return np.empty((capacity, self.rows.n_features), dtype=self.rows.dtype)

    def _read_window(self, window: int, buffer: np.ndarray):
        """Read ``window``'s blocks into ``buffer``; return ``(row order or None, rows)``. Runs in either thread."""
        n_rows = 0
        for block in np.sort(self._windows[window]):  # file order within a window: sequential reads
            n_rows += self.rows.read_block(int(block), buffer[n_rows:])
        order = None
        if self.shuffle:
            window_seed = int(np.random.default_rng([self.seed, self.epoch, window]).integers(2**62))
            order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(window_seed))
        return order, n_rows

    def _load_window(self, window: int) -> None:
        if self._pending is not None and self._pending[0] == window:
            _, buffer, future = self._pending
            self._pending = None
            order, n_rows = future.result()  # a read error (a non-finite row) surfaces here, when it matters
        else:
            self._cancel_pending()
            buffer = self._spare if self._spare is not None else self._new_buffer()
            order, n_rows = self._read_window(window, buffer)
        self._spare, self._buffer = self._buffer, buffer
        self._loaded = (window, order, n_rows)
        self._read_next(window)

    def _read_next(self, window: int) -> None:
        """Start reading the window that follows ``window`` in the expected order, if any."""
        while self._cursor < len(self._visits) and self._visits[self._cursor] != window:
            self._cursor += 1
        self._cursor += 1
        if not self.read_ahead or self._cursor >= len(self._visits):
            return
        following = self._visits[self._cursor]
        if following == window:
            return
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sklearn_sae-read-ahead")
        buffer = self._spare if self._spare is not None else self._new_buffer()
        self._spare = None  # the reader owns it until the window is served
        self._pending = (following, buffer, self._reader.submit(self._read_window, following, buffer))

    def _cancel_pending(self) -> None:
        """Wait for a read ahead that will not be used, and take its buffer back."""
        if getattr(self, "_pending", None) is None:
            return
        _, buffer, future = self._pending
        self._pending = None
        future.cancel() or future.exception()  # wait; its error belongs to a window nobody asks for
        self._spare = buffer

    def release(self) -> None:
        """Stop reading ahead and drop the buffers (they are allocated again on the next read)."""
        self._cancel_pending()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        self._buffer = self._spare = None
        self._loaded = None


class RowsSplit:
    """skorch ``train_split`` for rows objects: ``rows.split(validation_fraction, seed)``.

    Parameters
    ----------
    validation_fraction : float
        Share of the rows (of the blocks, on disk) held out.
    seed : int
        Seeds the choice of held-out rows.
    """

    def __init__(self, validation_fraction: float, seed: int):
        self.validation_fraction = validation_fraction
        self.seed = seed

    def __call__(self, dataset, y=None, **fit_params):
        return dataset.split(self.validation_fraction, self.seed)


def share_batches(units, *, num_processes: int, process_index: int, even: bool) -> list[int]:
    """The batch ids one process reads in an epoch: every ``num_processes``-th unit, starting at its index.

    A unit is a run of consecutive batch ids read together (a window of
    on-disk blocks, or a single in-memory batch). Every process lays out the
    same units from ``(seed, epoch)`` and takes its own, so the shares are
    disjoint and together hold every batch once, without any communication.

    Parameters
    ----------
    units : list of range
        The epoch's batch ids, grouped into units, in order.
    num_processes, process_index : int
        The launch's size and this process's rank.
    even : bool
        Pad every share to the length of the longest, as training needs:
        each optimiser step synchronises the gradients, so a process that ran
        out of batches first would leave the others waiting forever. A
        shorter share repeats its own last batches, last first (for on-disk
        data, rows of the window still loaded: no extra reads); a process with
        no unit of its own repeats the epoch's last batches. Validation
        passes ``even=False``: shares may differ, and every row counts once.

    Returns
    -------
    ids : list of int
    """
    if num_processes == 1:
        return [index for unit in units for index in unit]
    shares = [[index for unit in units[rank::num_processes] for index in unit] for rank in range(num_processes)]
    own = shares[process_index]
    if not even:
        return own
    longest = max(len(share) for share in shares)
    pool = own or [index for unit in units for index in unit]
    return own + [pool[-1 - j % len(pool)] for j in range(longest - len(own))]


class EpochIterator:
    """What every net iterates over: at each pass, the batches of the net's current epoch, on its device.

    skorch asks for an iterator once per ``fit`` (or ``partial_fit``) call
    and loops over it every epoch, so the epoch's layout is drawn when a pass
    starts, from the net's ``order_seed`` and its history's length (skorch
    has added the epoch's row by then): a resumed fit and the calls of a
    ``partial_fit`` run continue the epoch count. The net chooses which
    batches it takes (``net.batch_ids``: all of them, or one process's
    share). Batches arrive as float32 on the device.

    Parameters
    ----------
    net : SAENet
    rows : InMemoryRows or OnDiskRows
        What skorch's split hands the iterator.
    training : bool
        Shuffle (training) or keep the stored order (validation).
    """

    def __init__(self, net, rows, *, training: bool):
        self.net = net
        self.rows = rows
        self.training = training

    def _layout(self):
        batches = self.rows.epoch(
            self.net.batch_size, seed=self.net.order_seed, epoch=max(len(self.net.history) - 1, 0),
            shuffle=self.training, num_processes=self.net.num_processes,
        )
        return batches, self.net.batch_ids(batches.units(), training=self.training)

    def __len__(self) -> int:
        return len(self._layout()[1])

    def __iter__(self):
        batches, ids = self._layout()
        batches.expect(ids)
        device = torch.device(self.net.device)
        on_cuda = device.type == "cuda"
        for index in ids:
            batch = batches[index]
            if on_cuda:
                batch = batch.pin_memory().to(device, non_blocking=True)
            yield batch.to(device).float(), None
        batches.release()  # the fitted net must not keep a window of data alive

