"""``python -m temple_core.store``: the run-directory tree of docs/run-directory.md (the
``ENTRIES`` table of :mod:`.layout`). A ``__main__`` of the package rather than of ``layout``,
which the package imports first (running ``-m temple_core.store.layout`` warns about that)."""

from temple_core.store.layout import doc_tree

print(doc_tree())
