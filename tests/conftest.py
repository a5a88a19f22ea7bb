import sys
from pathlib import Path

# Let the suite run from a checkout that is not installed (`pip install -e .` makes this a no-op).
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

pytest_plugins = ["kvcommon.testing.harness", "pytester"]
