"""Out-of-memory back-off: the one way every batched model call in genaug meets a full device.

:class:`BatchBackoff` runs a call over ``count`` items in chunks of ``batch_size``. When a
chunk raises an out-of-memory error (:func:`is_out_of_memory`: CUDA's
``torch.cuda.OutOfMemoryError``, the CPU allocator's "can't allocate memory", MPS's "out of
memory"), the batch size is halved, the cache of the device emptied, and the same chunk tried
again; the smaller size stays for the rest of the run (the next chunk would fail the same
way) and is what the caller records. Retrying is safe because no call here keeps state
between chunks: each generated image's noise comes from its own seed, each CLIP embedding
from its own pixels. When a single item does not fit, the stage stops with
:class:`DoesNotFitError`, one line naming the stage, the item and the memory the failed
allocation asked for.

Used by the generation engine (:class:`genaug.generation.engine.BatchRenderer`) and by
:class:`genaug.clip.Clip` (SHB's patch scoring, the CLIP filters, SDI's embeddings).
"""

from __future__ import annotations

import re
from typing import Callable, TypeVar

import torch

T = TypeVar("T")

#: Messages of allocation failures that a smaller batch can cure (lower case).
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


class DoesNotFitError(RuntimeError):
    """One item of a stage does not fit in memory even alone; the message is one line for the user."""

    def __init__(self, stage: str, item: str, needed: str | None, device: str | None = None) -> None:
        self.stage, self.item, self.needed, self.device = stage, item, needed, device
        where = f" on {device}" if device else ""
        amount = f"it needed {needed} more{where}" if needed else f"the allocation size was not reported{where}"
        super().__init__(
            f"{stage}: {item} does not fit in memory even alone ({amount}); "
            "use a smaller working size or a lower-precision dtype (fp16/bf16), or a device with more memory"
        )


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, or a ``RuntimeError`` whose message says an allocation failed (CPU, MPS)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in OUT_OF_MEMORY_MESSAGES)


_CUDA_REQUEST = re.compile(r"tried to allocate\s+([\d.]+\s*[KMGT]i?B)", re.IGNORECASE)
_BYTES_REQUEST = re.compile(r"tried to allocate\s+(\d+)\s+bytes", re.IGNORECASE)


def memory_needed(error: BaseException) -> str | None:
    """The size of the failed allocation as the error states it ("2.00 GiB"), or None.

    CUDA says "Tried to allocate 2.00 GiB"; the CPU allocator "you tried to allocate
    2147483648 bytes" (given here in GiB / MiB).
    """
    text = str(error)
    match = _BYTES_REQUEST.search(text)
    if match:
        return format_bytes(int(match.group(1)))
    match = _CUDA_REQUEST.search(text)
    return match.group(1) if match else None


def format_bytes(count: int) -> str:
    """``count`` bytes in the largest binary unit that keeps the number >= 1: ``2.00 GiB``, ``512 B``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} B"


class BatchBackoff:
    """Chunks of at most ``batch_size`` items through a model call, halving the size on out-of-memory.

    ``stage`` names the stage in :class:`DoesNotFitError`; ``batch_size`` is the size in
    force (after any halving), the one to record; ``halvings`` counts the halvings.
    """

    def __init__(self, stage: str, batch_size: int, device: str | torch.device | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.stage = stage
        self.batch_size = batch_size
        self.device = str(device) if device is not None else None
        self.halvings = 0

    def run(self, call: Callable[[int, int], T], count: int, item_name: Callable[[int], str] | None = None) -> list[T]:
        """``[call(start, stop), ...]`` over ``range(count)`` in consecutive chunks, in order.

        A chunk that runs out of memory is retried at half its size; a single item that runs
        out of memory raises :class:`DoesNotFitError` naming ``item_name(index)`` (default
        "item <index>"). Other errors pass through unchanged.
        """
        outputs: list[T] = []
        start = 0
        while start < count:
            size = min(self.batch_size, count - start)
            try:
                outputs.append(call(start, start + size))
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                if not is_out_of_memory(error):
                    raise
                release_cached_memory()
                if size == 1:
                    name = item_name(start) if item_name else f"item {start}"
                    raise DoesNotFitError(self.stage, name, memory_needed(error), self.device) from error
                self.batch_size = max(1, size // 2)
                self.halvings += 1
                continue
            start += size
        return outputs


def release_cached_memory() -> None:
    """Give the CUDA caching allocator's free blocks back before a retry (nothing to do on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
