"""The ``fc2conv`` command: the README's first command runs and says what it claims."""

from __future__ import annotations

import subprocess
import sys

from fc2conv.cli import main


def test_demo_prints_the_derivation_results(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "correlate(X, V) = [[19.0, 25.0], [37.0, 43.0]]" in out
    assert "convolve(X, V)  = [[5.0, 11.0], [23.0, 29.0]]" in out
    # circular padding: exactly equivariant; zero padding: wrong only near the border
    assert "padding_mode='circular'  max error 0.00e+00" in out
    zeros_line = next(line for line in out.splitlines() if "padding_mode='zeros'" in line)
    assert "max error 0.00e+00" not in zeros_line
    assert zeros_line.endswith("away from the border 0.00e+00")
    assert "symmetric  2 1 1 2 3 4 4 3" in out


def test_info_and_help(capsys):
    assert main(["info"]) == 0
    assert "NumPy" in capsys.readouterr().out
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "fc2conv", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("fc2conv ")
