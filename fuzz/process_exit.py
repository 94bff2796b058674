"""`skip_exit_destructors()`: ends a fuzzing process with _exit once libFuzzer calls exit().

libFuzzer ends a run (-max_total_time, -runs) with C exit() from inside atheris.Fuzz(), the GIL held. exit()
runs the C++ static destructors, among them pyarrow's thread pools', which wait for their threads; a pyarrow I/O
thread may still be freeing a Python object of a finished read (a stream of the CSV reader, the exception a
read raised) and waits for the GIL: the process hangs forever after "Done N runs" (seen in about 1 run in 15 of
fuzz_rawlog.py; a normal Python exit finalizes the interpreter first, so users' processes do not hang). Handing
libFuzzer's exit status to _exit before those destructors run ends the process at once, with the same status.
"""
from __future__ import annotations

import ctypes
import os
import sys

_keep = []  # the C callback must outlive the call that registers it


def skip_exit_destructors() -> None:
    """Registers, after pyarrow's thread pools exist, an exit handler that runs before their destructors (glibc
    runs exit handlers in reverse order of registration) and calls _exit with exit()'s status."""
    try:
        import pyarrow

        pyarrow.cpu_count(), pyarrow.io_thread_count()  # create both pools now: their destructors register first
    except ImportError:
        pass

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)
    def on_exit(status: int, _arg) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    _keep.append(on_exit)
    if ctypes.CDLL(None).on_exit(on_exit, None) != 0:
        raise OSError("on_exit() refused the handler")
