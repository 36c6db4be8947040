"""The stages of a run (``select``, ``generate``, ``train``), one module each with its
recipe section's ``Config`` and ``run(ctx)``; :mod:`.runner` chains them. This package
file imports nothing, so the recipe schema can import the stages' ``Config`` classes."""
