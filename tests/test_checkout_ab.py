"""benchmarks/checkout_ab.py runs each side's own code: a before/after that ran one checkout
twice would report noise as a speed-up."""

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "checkout_ab.py"


def _module():
    spec = importlib.util.spec_from_file_location("checkout_ab", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_side_imports_evopop_from_its_own_checkout(tmp_path):
    """Even when the caller stands in another checkout (the repo root), `python -m` in a side's
    process finds that side's evopop first."""
    checkout = tmp_path / "base"
    (checkout / "evopop").mkdir(parents=True)
    (checkout / "evopop" / "__init__.py").write_text("")
    (checkout / "evopop" / "probe.py").write_text("import evopop; print(evopop.__file__)\n")
    out = subprocess.run([sys.executable, "-m", "evopop.probe"], capture_output=True,
                         text=True, check=True, **_module().checkout_process(checkout))
    assert Path(out.stdout.strip()) == checkout / "evopop" / "__init__.py"
