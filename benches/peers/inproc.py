"""In-process timing for the peer scripts: `import inproc` first, call `inproc.imported()`
after the engine's imports; at exit the script prints to stderr

    @@inproc@@ IMPORT_SECONDS QUERY_SECONDS

where IMPORT_SECONDS runs from this module's import to `imported()` (the engine's own
imports; interpreter start-up is before both) and QUERY_SECONDS from `imported()` to exit
(reading the files, the query, writing the answer). run.py reports QUERY_SECONDS as the
peer's time, so interpreter start-up and imports never count against a peer."""
import atexit
import sys
import time

_T0 = time.perf_counter()
_T1 = None


def imported():
    global _T1
    _T1 = time.perf_counter()


@atexit.register
def _report():
    if _T1 is not None:
        t2 = time.perf_counter()
        print(f"@@inproc@@ {_T1 - _T0:.4f} {t2 - _T1:.4f}", file=sys.stderr, flush=True)
