"""The README is what users read first: its option table must be the configuration's."""

import subprocess
import sys

from conftest import ROOT


def test_readme_option_table_matches_the_config():
    proc = subprocess.run([sys.executable, "scripts/readme_options.py", "--check"], cwd=ROOT, timeout=30)
    assert proc.returncode == 0, "README.md's option table is stale: run scripts/readme_options.py"


def test_readme_starts_with_the_two_commands_ci_uses():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    first_block = readme.split("```", 2)[1]
    assert "./scripts/serve.sh" in first_block and "./scripts/test.sh" in first_block
    assert "./scripts/test.sh" in ci
