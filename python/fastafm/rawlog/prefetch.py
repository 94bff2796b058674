"""`prefetched(items, depth)`: the items of an iterable produced on a thread of their own, `depth` ahead of the
consumer, so that the producer's work that releases the GIL (pyarrow parsing a block of text, a file write)
overlaps the consumer's (the C++ counting and mapping). Measured in bench/RESULTS.md ("Overlap", issue 23):
without it the conversion's parsing, counting and writing took turns on one core.

The producer's exceptions reach the consumer at the item where they happened; a consumer that stops early (an
error, a break) stops the producer and closes the iterable on the producer's thread. At most `depth` items
are held besides the one being consumed.
"""
from __future__ import annotations

import queue
import threading

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetched(items, depth: int = 2):
    """The items of `items`, in order, produced on another thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failed(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="fastafm-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to put, then let it close its iterable
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
