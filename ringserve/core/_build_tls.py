"""cffi API-mode build of the kTLS helpers (tls.c) against the system OpenSSL.

Like _build.py: tls.h is the only declaration of the C API and, minus its preprocessor
lines, the cdef. The extension must use the same libssl as Python's ssl module (it is
handed that module's SSL pointers): ringserve/ktls.py checks that at start-up.
"""
import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

NO_OPENSSL = """
ringserve needs the OpenSSL development files to build its kTLS helpers. Install them, then build again:
  Debian/Ubuntu:  apt-get install libssl-dev
  Fedora/RHEL:    dnf install openssl-devel
  Alpine:         apk add openssl-dev
"""


def _cdef() -> str:
    with open(os.path.join(HERE, "tls.h")) as f:
        return "".join(ln for ln in f if not ln.lstrip().startswith("#"))


if not os.path.exists("/usr/include/openssl/ssl.h") and not os.environ.get("RINGSERVE_SKIP_SSL_CHECK"):
    import subprocess

    probe = subprocess.run([os.environ.get("CC", "cc"), "-E", "-x", "c", "-"], input="#include <openssl/ssl.h>\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit("error: openssl/ssl.h not found." + NO_OPENSSL)

ffibuilder = FFI()
ffibuilder.cdef(_cdef())
with open(os.path.join(HERE, "tls.c")) as f:
    ffibuilder.set_source(
        "ringserve.core._tls",
        '#include "tls.h"\n' + f.read().replace('#include "tls.h"', ""),
        include_dirs=[HERE],
        libraries=["ssl", "crypto"],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"],
    )

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "..", ".."), verbose=True)
