import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(session, config, items):
    """Fast unit tests first, then the integration tests; the TLS graph (a second server) last."""

    def rank(item) -> int:
        path = str(item.fspath)
        if "/unit/" in path:
            return 0
        return 2 if "tls" in Path(path).name else 1

    items.sort(key=rank)
