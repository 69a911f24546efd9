"""Progress bars (tqdm) that also work as the protocol's ``progress(done, total)`` callback."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def bar(total: int, desc: str, unit: str = "it", **kwargs) -> tqdm:
    """A tqdm bar on stderr with rate and ETA; silent when stderr is not a terminal and CI is set."""
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                mininterval=0.5, **kwargs)


class RoundProgress:
    """Adapter: ``measure_interleaved(..., progress=RoundProgress("profiling"))``."""

    def __init__(self, desc: str, unit: str = "round") -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = bar(total, self.desc, self.unit)
        self.bar.update(done - self.bar.n)
        if done == total:
            self.bar.close()
