import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(session, config, items):
    """Fast unit tests first, then the integration tests; the TLS graph and the two-node cluster last."""

    def rank(item) -> int:
        path = str(item.fspath)
        if "/unit/" in path:
            return 0
        name = Path(path).name
        return 3 if "cluster" in name else 2 if "tls" in name else 1

    items.sort(key=rank)
