"""Measuring one stage: wall time, peak memory, FLOPs per model, and the time spent in the UNet.

:class:`StageMeter` wraps a block of work:

- ``seconds``: wall time;
- ``peak_rss_bytes``: the largest resident set size sampled every 20 ms (a thread reading
  ``psutil``), and on a GPU ``cuda_max_allocated_bytes`` (``torch.cuda.max_memory_allocated``
  after a reset);
- ``flops`` and ``flops_by_model``: floating-point operations counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplies, convolutions and
  attention, forward and backward; 2 per multiply-add), totalled per top-level module
  class (``UNet2DConditionModel``, ``AutoencoderKL``, ``CLIPModel`` ...);
- ``unet_calls`` and ``unet_seconds``: forward calls of any ``UNet2DConditionModel`` and
  their wall time, which is what scales with the denoising step count.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

#: Module classes whose calls are timed (the part of a generation stage that scales with steps).
TIMED_MODULES = ("UNet2DConditionModel",)


@dataclass
class StageMeter:
    """Measures the block run inside :meth:`measure` (module doc)."""

    count_flops: bool = True
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    cuda_max_allocated_bytes: int | None = None
    flops: int = 0
    flops_by_model: dict[str, int] = field(default_factory=dict)
    unet_calls: int = 0
    unet_seconds: float = 0.0
    unet_call_seconds: list[float] = field(default_factory=list)

    @contextmanager
    def measure(self):
        sampler = _RssSampler()
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        counter = flop_counter() if self.count_flops else None
        started = time.perf_counter()
        sampler.start()
        try:
            with _time_unet(self), (counter if counter is not None else _nothing()):
                yield self
        finally:
            if cuda:
                torch.cuda.synchronize()
                self.cuda_max_allocated_bytes = int(torch.cuda.max_memory_allocated())
            self.seconds = time.perf_counter() - started
            self.peak_rss_bytes = sampler.stop()
            if counter is not None:
                self.flops = int(counter.get_total_flops())
                self.flops_by_model = top_level_flops(counter.get_flop_counts())

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "peak_rss_bytes": self.peak_rss_bytes,
            "cuda_max_allocated_bytes": self.cuda_max_allocated_bytes,
            "flops": self.flops,
            "flops_by_model": self.flops_by_model,
            "unet_calls": self.unet_calls,
            "unet_seconds": self.unet_seconds,
            "unet_steady_call_seconds": self.steady_call_seconds,
        }

    @property
    def steady_call_seconds(self) -> float | None:
        """Seconds of one UNet call once warm: the median of the calls after the first
        (the first call of a process pays kernel selection and first-touch allocation);
        the only call when there was one."""
        calls = self.unet_call_seconds
        if not calls:
            return None
        warm = sorted(calls[1:] or calls)
        return warm[len(warm) // 2]


def flop_counter():
    """A ``FlopCounterMode`` that also counts the CPU's fused attention kernel.

    torch's formulas cover the CUDA flash / memory-efficient attention kernels but not
    ``_scaled_dot_product_flash_attention_for_cpu`` (forward and backward), which SDPA runs on
    the CPU: without these entries every attention layer would count as zero there. The
    formulas are torch's own for the other SDPA kernels (same arguments: query, key, value).
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    return FlopCounterMode(display=False, custom_mapping=mapping)


def top_level_flops(counts: dict[str, dict[Any, int]]) -> dict[str, int]:
    """FLOPs per top-level module class from ``FlopCounterMode.get_flop_counts()``.

    Its keys are module paths (``UNet2DConditionModel.down_blocks.0...``) plus ``Global``;
    a top-level key (no dot) already holds everything below it.
    """
    return {name: int(sum(ops.values())) for name, ops in counts.items() if name != "Global" and "." not in name}


@contextmanager
def _nothing():
    yield


@contextmanager
def _time_unet(meter: StageMeter):
    """Count and time the forward calls of every module class in :data:`TIMED_MODULES`."""
    import diffusers

    classes = [getattr(diffusers, name) for name in TIMED_MODULES]
    originals = [cls.forward for cls in classes]
    cuda = torch.cuda.is_available()

    def timed(original):
        def forward(module, *args, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            try:
                return original(module, *args, **kwargs)
            finally:
                if cuda:
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - started
                meter.unet_seconds += seconds
                meter.unet_calls += 1
                meter.unet_call_seconds.append(seconds)

        return forward

    for cls, original in zip(classes, originals):
        cls.forward = timed(original)
    try:
        yield
    finally:
        for cls, original in zip(classes, originals):
            cls.forward = original


class _RssSampler:
    """The peak resident set size of this process over a block, sampled in a thread."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self.peak = self.process.memory_info().rss
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.process.memory_info().rss)


def process_peak_rss_bytes() -> int:
    """The process's peak RSS so far (``ru_maxrss``, KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
