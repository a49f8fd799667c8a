from setuptools import setup

setup(cffi_modules=["ringserve/core/_build.py:ffibuilder", "ringserve/core/_build_tls.py:ffibuilder"])
