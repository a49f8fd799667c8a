"""Replay tests/corpus/*.http whole, by lines, by bytes and in random splits (gunicorn-style corpus)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load(name: str):
    path = Path(__file__).parent / "corpus" / f"{name}.py"
    module = sys.modules.get(f"rs_http_{name}")
    if module is None:
        spec = importlib.util.spec_from_file_location(f"rs_http_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


harness = _load("harness")
EXPECT = _load("expect").expectations(harness.req)
NAMES = sorted(p.stem for p in harness.CORPUS.glob("*.http"))
NEXT = b"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n"


def test_every_file_has_an_expectation():
    assert sorted(EXPECT) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_corpus(name):
    assert harness.replay_all(harness.load_http(name)) == EXPECT[name]


def _still_open(outcome: list[tuple]) -> bool:
    return outcome[-1] == ("end",)


@pytest.mark.parametrize("name", [n for n in NAMES if _still_open(EXPECT[n])])
def test_corpus_then_another_request(name):
    """Trailing data: a valid request after a complete one is served after it, whatever the split."""
    got = harness.replay_all(harness.load_http(name) + NEXT)
    assert got == EXPECT[name] + [harness.req(b"GET", b"/next"), ("end",)]


@pytest.mark.parametrize("name", [n for n in NAMES if _still_open(EXPECT[n])])
def test_corpus_then_garbage(name):
    got = harness.replay_all(harness.load_http(name) + b"\x00garbage\r\n\r\n")
    assert got == EXPECT[name] + [("error", 400)]


@pytest.mark.parametrize("name", [n for n in NAMES if _still_open(EXPECT[n])])
def test_corpus_then_eof(name):
    got = harness.replay_all(harness.load_http(name), eof=True)
    assert got == EXPECT[name] + [("closed",)]
