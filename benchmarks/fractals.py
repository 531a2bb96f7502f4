"""How long the fractal bank takes to make: 100 fractals at 64 x 64 (was a timed test assertion).

    PYTHONPATH=src python benchmarks/fractals.py
"""

from __future__ import annotations

import os
import time

from genaug.mixing.fractals import make_fractals


def main() -> None:
    times = []
    for seed in range(3):
        started = time.perf_counter()
        make_fractals(100, 64, seed=seed)
        times.append(time.perf_counter() - started)
    load = os.getloadavg()[0]
    print(f"make_fractals(100, 64): {min(times):.2f} s best of 3 ({', '.join(f'{t:.2f}' for t in times)}), load average {load:.2f}")


if __name__ == "__main__":
    main()
