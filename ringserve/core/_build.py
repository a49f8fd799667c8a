"""cffi API-mode build of the io_uring core (ring.c) against the system liburing.

ring.h is the only declaration of the C API: its preprocessor lines are dropped
and the rest is the cdef, so the two cannot drift apart.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
MIN_LIBURING = (2, 3)

NO_LIBURING = """
ringserve needs the liburing development files (liburing >= 2.3) to build its io_uring core.
Install them, then build again:
  Debian/Ubuntu:  apt-get install liburing-dev
  Fedora/RHEL:    dnf install liburing-devel
  Arch:           pacman -S liburing
  Alpine:         apk add liburing-dev
"""


def _check_liburing() -> None:
    """Stop the build with a message naming the package when liburing is missing."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        sys.exit(f"error: no C compiler ({cc!r}) found: install gcc (Debian/Ubuntu: apt-get install build-essential)")
    src = (
        "#include <liburing.h>\n"
        "#if !defined(IORING_SETUP_DEFER_TASKRUN)\n#error liburing too old\n#endif\n"
        "int main(void) { struct io_uring r; return io_uring_queue_init(1, &r, 0) == 12345; }\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(src)
        res = subprocess.run(
            cc.split() + [path, "-o", os.path.join(tmp, "probe"), "-luring"],
            capture_output=True,
            text=True,
        )
    if res.returncode != 0:
        sys.exit("error: liburing >= 2.3 not found." + NO_LIBURING + "\ncompiler said:\n" + res.stderr[-2000:])


def _cdef() -> str:
    with open(os.path.join(HERE, "ring.h")) as f:
        lines = [ln for ln in f if not ln.lstrip().startswith("#")]
    return "".join(lines)


_check_liburing()

ffibuilder = FFI()
ffibuilder.cdef(
    """
    struct iovec { void *iov_base; size_t iov_len; };
    struct msghdr { struct iovec *msg_iov; size_t msg_iovlen; ...; };
    """
)
ffibuilder.cdef(_cdef())
# cffi wraps every call in Py_BEGIN/END_ALLOW_THREADS. Only rs_wait() blocks (it waits for
# completions); every other rs_* call prepares an SQE or reads a counter in well under a
# microsecond. Releasing the GIL there is an open door: a WSGI pool thread takes it, and the loop
# thread waits for that thread's whole app call (or the 5 ms switch interval) to get it back - a
# GIL ping-pong at every send and buffer recycle (measured: ~2 futex calls per WSGI request).
# So the wrappers of this module release the GIL in rs_wait() only. ring.c itself stays free of
# Python: this is cffi glue, keyed on the wrapper's name.
KEEP_GIL = r"""
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define RS_BLOCKING_CALL (__builtin_strcmp(__func__, "_cffi_f_rs_wait") == 0)
#define Py_BEGIN_ALLOW_THREADS { PyThreadState *_save = RS_BLOCKING_CALL ? PyEval_SaveThread() : NULL;
#define Py_END_ALLOW_THREADS if (_save) PyEval_RestoreThread(_save); }
"""

with open(os.path.join(HERE, "ring.c")) as f:
    ffibuilder.set_source(
        "ringserve.core._ring",
        '#include "ring.h"\n' + f.read().replace('#include "ring.h"', "") + KEEP_GIL,
        include_dirs=[HERE],
        libraries=["uring"],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"],
    )

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "..", ".."), verbose=True)
