"""A plugin module that fails to import (for the bad-input tests)."""

raise ImportError("this plugin needs a package that is not installed: nonexistent_dependency")
