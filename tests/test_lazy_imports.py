"""`import fastafm` stays light: the submodules with optional dependencies (plot: matplotlib, onnx: onnx) are
module attributes imported on first access (PEP 562), never at import time."""
from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_fastafm_imports_neither_matplotlib_nor_onnx_and_the_attributes_resolve():
    out = _run(
        "import sys\n"
        "import fastafm\n"
        "print('matplotlib' in sys.modules, 'onnx' in sys.modules, 'onnxruntime' in sys.modules)\n"
        "print(callable(fastafm.plot.history), callable(fastafm.plot.attention_heatmap))\n"
        "print('matplotlib' in sys.modules)\n"  # fastafm.plot itself imports matplotlib only when drawing
        "print(callable(fastafm.onnx.export), callable(fastafm.onnx.to_padded))\n"
        "import fastafm.plot, fastafm.onnx\n"
        "print(fastafm.plot is sys.modules['fastafm.plot'], fastafm.onnx is sys.modules['fastafm.onnx'])\n"
        "print('plot' in dir(fastafm), 'onnx' in dir(fastafm))\n"
    )
    assert out.split("\n")[:6] == ["False False False", "True True", "False", "True True", "True True", "True True"]


def test_unknown_attribute_is_still_an_attribute_error():
    out = _run(
        "import fastafm\n"
        "try:\n"
        "    fastafm.no_such_thing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    assert out.strip() == "module 'fastafm' has no attribute 'no_such_thing'"


def test_plot_without_matplotlib_gives_the_existing_message():
    out = _run(
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"  # any `import matplotlib...` now raises ImportError
        "import fastafm\n"
        "try:\n"
        "    fastafm.plot.history([{'epoch': 1, 'train_loss': 1.0}])\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert out.strip() == ("fastafm.plot needs matplotlib, which is not installed; install it with "
                           "`pip install matplotlib` (or `pip install fastafm[plot]`)")


def test_onnx_export_without_onnx_says_how_to_install_it():
    out = _run(
        "import sys\n"
        "sys.modules['onnx'] = None\n"
        "import fastafm\n"
        "try:\n"
        "    fastafm.onnx.export(None)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert out.strip() == ("fastafm.onnx.export needs onnx, which is not installed; install it with "
                           "`pip install onnx` (or `pip install fastafm[onnx]`)")


def test_field_encoder_without_pandas_gives_the_existing_message():
    out = _run(
        "import sys\n"
        "sys.modules['pandas'] = None\n"
        "import fastafm\n"
        "try:\n"
        "    fastafm.FieldEncoder().fit({'a': [1]})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert out.strip() == ("fastafm.FieldEncoder needs pandas, which is not installed; install it with "
                           "`pip install pandas` (or `pip install fastafm[pandas]`)")
