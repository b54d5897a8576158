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
    out = capsys.readouterr().out
    assert "NumPy" in out and "Numba" in out
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "fc2conv", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("fc2conv ")


def test_params_prints_the_seed_table(capsys):
    assert main(["params", "--size", "1000", "1000", "--delta", "5"]) == 0
    out = capsys.readouterr().out
    dense = next(line for line in out.splitlines() if line.startswith("dense-on-grid"))
    assert "1,000,000,000,000" in dense and "1,000,000" in dense
    shared = next(line for line in out.splitlines() if line.startswith("translation invariant"))
    assert shared.split()[5] == "3,996,001"
    conv = next(line for line in out.splitlines() if line.startswith("convolution"))
    assert conv.split()[4:8] == ["121", "1", "122", "242"]
    assert "FLOPs/output" in out


def test_ladder_walks_down_by_projection_and_up_exactly(capsys):
    from fc2conv.ladder import walk

    rows = walk((10, 10), 1)
    down, up = rows["down"], rows["up"]
    assert [r["params"] for r in down] == [100 * 100 + 100, 100 * 9 + 100, 10]
    # random dense and locally connected layers are far from equivariant, the conv is
    # equivariant away from the border (zero padding)
    assert down[0]["shift_error"] > 1e-2 and down[1]["shift_error_interior"] > 1e-2
    assert down[2]["shift_error_interior"] < 1e-12 and down[2]["shift_error"] > 1e-3
    assert [r["translation_invariant"] for r in down] == [False, False, True]
    assert down[1]["radius"] == down[2]["radius"] == (1, 1)
    # the exact embeddings: same outputs, all exactly equivariant with circular padding
    assert all(r["vs_above"] < 1e-12 for r in up[1:])
    assert all(r["shift_error"] < 1e-12 for r in up)
    assert all(r["translation_invariant"] and r["radius"] == (1, 1) for r in up)
    assert main(["ladder", "--size", "9", "--delta", "2", "--channels", "2", "3"]) == 0
    out = capsys.readouterr().out
    assert "locally connected = untie(conv)" in out and "Down:" in out and "Up:" in out


def test_params_and_ladder_reject_bad_sizes(capsys):
    import pytest

    for argv in (["params", "--size", "1", "2", "3", "4"], ["ladder", "--delta", "-1"],
                 ["ladder", "--size", "4", "--delta", "4"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "error" in capsys.readouterr().err
