"""fwbus.py also runs as a helper under the platform Python, which is 3.9 on EL9."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "imageroot/pypkg/nethvoice_bypass/fwbus.py"


def test_fwbus_parses_as_python_3_9():
    ast.parse(SOURCE.read_text(), feature_version=(3, 9))


def test_fwbus_uses_nothing_newer_than_python_3_9():
    vermin = subprocess.run([str(Path(sys.executable).parent / "vermin"), "--no-tips", "--eval-annotations",
                             "--violations", "-t=3.9-", str(SOURCE)], capture_output=True, text=True)
    assert vermin.returncode == 0, vermin.stdout + vermin.stderr


def test_fwbus_imports_only_dbus_and_the_standard_library():
    tree = ast.parse(SOURCE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative
    assert imported - {"dbus"} <= sys.stdlib_module_names
