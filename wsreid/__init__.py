"""wsreid: plugin framework for weakly-supervised text-to-person re-identification."""

from wsreid.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
