"""Progress bars for the command line (stderr, so --json output on stdout stays parseable)."""

from __future__ import annotations

from collections.abc import Callable


def parse_bar(total: int, desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A file-count bar for one source's parse: (update(done, total), close)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="file", leave=False)

    def update(done: int, new_total: int) -> None:
        bar.total = new_total
        bar.n = done
        bar.refresh()

    return update, bar.close
