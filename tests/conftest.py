from pathlib import Path


def pytest_collection_modifyitems(session, config, items):
    """Fast unit tests first, then the integration tests; the TLS graph and the two-node cluster last."""

    def rank(item) -> int:
        path = str(item.fspath)
        if "/unit/" in path:
            return 0
        name = Path(path).name
        return 3 if "cluster" in name else 2 if "tls" in name else 1

    items.sort(key=rank)
