"""An app whose import fails (a missing dependency): workers cannot boot."""

import ringserve_no_such_dependency  # noqa: F401

app = None
