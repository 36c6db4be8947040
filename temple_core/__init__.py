"""temple: TEMPLE (temporal preference learning) for Video LLMs, as a plugin framework.

The core knows stages and plugins; every piece of real work is a plugin (see
``temple_core.hookspecs``). Plugins import :data:`hookimpl` from here or from hookspecs.
"""

from temple_core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
