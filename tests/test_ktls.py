"""Kernel TLS (--ktls): the end-to-end tests in tests/ktls_guest.py, run where the kernel has kTLS.

This machine's kernel may have no `tls` module. Then tests/ktls_guest.py runs in a throw-away QEMU guest
that has one (``run-in-vm.sh``: $RINGSERVE_KTLS_VM, default <repo>/../shared/tools/ktls-vm/run-in-vm.sh,
see its header): ONE guest invocation, ``python -m pytest tests/ktls_guest.py --junitxml=...`` with the
results directory shared read-write (KTLSVM_RW). When the host kernel has kTLS itself, the same pytest run
happens on the host, without a VM.

- test_guest_suite_passed: the guest pytest run exited 0 (its whole output on failure).
- test_guest[<name>]: one per test function of tests/ktls_guest.py (found by parsing that file), so a
  failure names the case; it carries the guest's failure text and the server output of that case.
- A VM that cannot start at all (no tool, not root, no qemu and no apt, a trivial command fails in it)
  skips with the reason. A VM that runs a trivial command but whose pytest run left no results fails.
- Without a VM: ``--ktls on`` must refuse to start on a kernel without kTLS, ``--ktls auto`` must fall
  back to userspace TLS (host-only tests, skipped when the host has kTLS).
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Server
from helpers.certs import make_tls_files
from helpers.ktls import kernel_tls_missing

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "tests" / "ktls_guest.py"
DEFAULT_VM_TOOL = ROOT.parent / "shared" / "tools" / "ktls-vm" / "run-in-vm.sh"
VM_CACHE = Path(os.environ.get("KTLSVM_DIR", "/tmp/ktlsvm"))
VM_TIMEOUT = 240  # the guest run (qemu is killed by the tool after this)
PROBE_TIMEOUT = 180  # a trivial command in the VM, first use included (apt-get, kernel download)
APP = "tests.apps.ktls_app:app"
HOST_KTLS_MISSING = kernel_tls_missing()


def guest_test_names() -> list[str]:
    """The test functions of tests/ktls_guest.py, without importing it (it skips itself without kTLS)."""
    tree = ast.parse(GUEST.read_text(), str(GUEST))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


# --------------------------------------------------------------------------- running the guest suite


@dataclass
class Case:
    name: str
    outcome: str  # passed | failed | error | skipped
    message: str = ""
    text: str = ""
    output: str = ""  # what the test printed (the server output, on failure)


@dataclass
class GuestRun:
    where: str
    command: list[str]
    returncode: int | None
    output: str = field(repr=False)
    cases: list[Case] = field(default_factory=list, repr=False)
    junit_missing: bool = False

    def report(self, limit: int = 20000) -> str:
        out = self.output if len(self.output) <= limit else "[...]\n" + self.output[-limit:]
        return f"{self.where}: {' '.join(self.command)}\nexit status {self.returncode}\n--- output ---\n{out}"


def vm_tool() -> Path:
    return Path(os.environ.get("RINGSERVE_KTLS_VM") or DEFAULT_VM_TOOL)


def vm_unusable() -> str | None:
    """Why the VM tool cannot run here at all (before trying it), or None."""
    tool = vm_tool()
    if not tool.is_file() or not os.access(tool, os.X_OK):
        return f"the kTLS VM tool {tool} is missing (set RINGSERVE_KTLS_VM)"
    if os.geteuid() != 0:
        return "the kTLS VM tool must run as root (9p passthrough of /)"
    apt = shutil.which("apt-get")
    if not shutil.which("qemu-system-x86_64") and not apt:
        return "no qemu-system-x86_64 and no apt-get to install it"
    cached = any(VM_CACHE.glob("initramfs-*.cpio.gz"))
    if not cached and not shutil.which("cpio"):
        if not apt:
            return "the VM's initramfs needs cpio: not installed and no apt-get"
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "cpio"],
                              check=False, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not shutil.which("cpio"):
            return f"cannot install cpio for the VM's initramfs: {done.stderr.strip()[-500:]}"
    return None


def run_group(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int | None, str]:
    """Run `cmd` in its own process group; on timeout kill the group (qemu included)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out.decode("utf-8", "replace") + f"\n[killed after {timeout}s]"


def parse_junit(path: Path) -> list[Case]:
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        name = tc.get("name", "")
        output = "\n".join((el.text or "") for el in tc.findall("system-out"))
        outcome, message, text = "passed", "", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message, text = el.get("message", ""), el.text or ""
                if outcome != "skipped":
                    break  # a failure and an error (teardown) on one case: the failure is reported first
        cases.append(Case(name, outcome, message, text, output))
    return cases


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory) -> GuestRun:
    results = tmp_path_factory.mktemp("ktls-guest")
    junit = results / "junit.xml"
    # --basetemp: the guest's own temporary files stay out of /tmp/pytest-of-*, where `results` is
    # mounted read-write (a guest pytest must not clean up the host's numbered directories)
    basetemp = results / "tmp" if HOST_KTLS_MISSING is None else Path("/tmp/ringserve-ktls-guest")
    pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
                  f"--basetemp={basetemp}", "-o", "junit_logging=system-out", f"--junitxml={junit}", str(GUEST)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if HOST_KTLS_MISSING is None:
        where, cmd = "host (its kernel has kTLS)", pytest_cmd
        code, output = run_group(cmd, VM_TIMEOUT, env)
    else:
        reason = vm_unusable()
        if reason:
            pytest.skip(f"{HOST_KTLS_MISSING}; {reason}")
        where, cmd = f"kTLS VM ({vm_tool()})", [str(vm_tool()), *pytest_cmd]
        env.update(KTLSVM_RW=str(results), KTLSVM_TIMEOUT=str(VM_TIMEOUT))
        code, output = run_group(cmd, VM_TIMEOUT + 60, env)
        if not junit.exists():
            # No results: a VM that cannot start at all is a skip; one that runs `true` is our failure.
            probe_env = dict(env, KTLSVM_TIMEOUT=str(PROBE_TIMEOUT))
            probe_code, probe_out = run_group([str(vm_tool()), "/bin/true"], PROBE_TIMEOUT + 30, probe_env)
            if probe_code != 0:
                pytest.skip(f"{HOST_KTLS_MISSING}; the kTLS VM cannot run a trivial command here "
                            f"(exit {probe_code}): {probe_out.strip()[-1500:]}")
    run = GuestRun(where, cmd, code, output)
    if junit.exists():
        run.cases = parse_junit(junit)
    else:
        run.junit_missing = True
    return run


pytestmark = pytest.mark.timeout(VM_TIMEOUT + 60 + PROBE_TIMEOUT + 60)


def test_guest_suite_passed(guest_run):
    if guest_run.junit_missing:
        pytest.fail("the guest pytest run left no results\n" + guest_run.report(), pytrace=False)
    if guest_run.returncode != 0:
        pytest.fail("the guest pytest run failed\n" + guest_run.report(), pytrace=False)


@pytest.mark.parametrize("name", guest_test_names())
def test_guest(guest_run, name):
    if guest_run.junit_missing:
        pytest.fail("the guest pytest run left no results\n" + guest_run.report(), pytrace=False)
    cases = [c for c in guest_run.cases if c.name == name or c.name.startswith(name + "[")]
    if not cases:
        pytest.fail(f"{name} did not run in the guest\n" + guest_run.report(), pytrace=False)
    bad = [c for c in cases if c.outcome in ("failed", "error")]
    if bad:
        details = "\n\n".join(f"=== {c.name}: {c.outcome}: {c.message}\n{c.text}\n{c.output}".rstrip() for c in bad)
        passed = [c.name for c in cases if c.outcome == "passed"]
        pytest.fail(f"in the {guest_run.where}, {len(bad)} of {len(cases)} failed (passed: {passed})\n{details}",
                    pytrace=False)
    if all(c.outcome == "skipped" for c in cases):
        pytest.skip("; ".join(f"{c.name}: {c.message}" for c in cases))


# --------------------------------------------------------------------------- host only: no kTLS here


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("ktls-host-certs"))


needs_no_host_ktls = pytest.mark.skipif(HOST_KTLS_MISSING is None, reason="the host kernel has kTLS")


@needs_no_host_ktls
@pytest.mark.timeout(60)
def test_ktls_on_refuses_to_start_without_kernel_tls(certs):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        done = subprocess.run(
            [sys.executable, "-m", "ringserve", APP, "--fd", str(sock.fileno()), *certs.server_args("--ktls", "on")],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), pass_fds=(sock.fileno(),), check=False,
            capture_output=True, text=True, timeout=30,
        )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "--ktls on, but kernel TLS is unavailable" in output, output
    assert "running on" not in output.lower(), output


@needs_no_host_ktls
@pytest.mark.timeout(60)
def test_ktls_auto_falls_back_to_userspace(certs):
    server = Server("ringserve", APP, certs.server_args("--ktls", "auto"))
    server.start()
    try:
        server.wait_for_output(r"kTLS: off \(", what="the kTLS: off (reason) line")
        ctx = certs.client_context(min_version=ssl.TLSVersion.TLSv1_2, max_version=ssl.TLSVersion.TLSv1_2)
        with server.client(verify=ctx) as client:
            got = client.get("/info").json()
            big = client.get("/big?size=300000")
        assert got["ktls"] is None, got
        assert got["tls_version"] == 0x0303
        assert len(big.content) == 300000
    finally:
        server.stop()
    assert not server.exit_problems(), server.exit_problems()
