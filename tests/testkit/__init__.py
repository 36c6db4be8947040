"""Helpers shared by the test suites, importable as ``testkit`` (pytest's ``pythonpath``
setting in pyproject.toml puts ``tests/`` on the path): tiny videos, pairs and backends for
training (:mod:`.training`), synthetic selected videos for generation (:mod:`.generation`),
the selection plugins and synthetic videos with known cuts (:mod:`.selection`), small
random videos for the backends (:mod:`.backends`)."""
