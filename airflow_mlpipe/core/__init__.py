"""What every stage shares: artifact storage, dataset I/O, lineage, XCom results, lazy imports.

Nothing here imports a heavy ML library at module level.
"""
