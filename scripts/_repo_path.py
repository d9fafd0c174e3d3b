"""The one place that puts the repository root on ``sys.path``.

A script run as ``python scripts/x.py`` has only ``scripts/`` on ``sys.path``, not the root, so it could not
import the project's packages (protocol, speech, agents, harness, ...). Every script in this folder therefore
imports this module first: ``from _repo_path import ROOT``. Tests need nothing of the kind: pytest puts the
root on ``sys.path`` itself (``pythonpath = .`` in pytest.ini).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
