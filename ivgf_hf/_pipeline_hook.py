"""Register the RGB-T pipelines as soon as transformers' pipeline module is imported, without importing it here.

``import ivgf_hf`` must stay light (standard library only), yet ``transformers.pipeline("rgbt-...")`` should know the
IVGF tasks in any process that imported ``ivgf_hf``. :func:`install` puts a finder on ``sys.meta_path`` that wraps
the loading of ``transformers.pipelines`` (and of ``ivgf_hf.modeling.pipeline_ivgf``, which imports it) and calls
:func:`ivgf_hf.pipelines.register_pipelines` once the former is loaded and the latter is not half-way through its
own import.
"""

import importlib
import importlib.abc
import sys

__all__ = ["install"]

TRANSFORMERS_PIPELINES = "transformers.pipelines"
PIPELINE_MODULE = "ivgf_hf.modeling.pipeline_ivgf"


def _register() -> None:
    importlib.import_module("ivgf_hf.pipelines").register_pipelines()


class _PipelineRegistrationFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loaders that the other finders return for the two watched modules."""

    def __init__(self):
        self.pipelines_loaded = False
        self.pipeline_module_importing = False

    def find_spec(self, fullname, path, target=None):
        if fullname not in (TRANSFORMERS_PIPELINES, PIPELINE_MODULE):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader.exec_module = self._wrap(fullname, spec.loader.exec_module)
        return spec

    def _wrap(self, fullname, exec_module):
        def exec_then_register(module):
            if fullname == PIPELINE_MODULE:
                self.pipeline_module_importing = True
            try:
                exec_module(module)
            finally:
                if fullname == PIPELINE_MODULE:
                    self.pipeline_module_importing = False
            if fullname == TRANSFORMERS_PIPELINES:
                self.pipelines_loaded = True
            self.register_when_ready()

        return exec_then_register

    def register_when_ready(self) -> None:
        if self.pipelines_loaded and not self.pipeline_module_importing and self in sys.meta_path:
            sys.meta_path.remove(self)
            _register()


def install() -> None:
    """Register now if ``transformers.pipelines`` is already imported, else when it is (idempotent)."""
    if TRANSFORMERS_PIPELINES in sys.modules:
        _register()
    elif not any(isinstance(finder, _PipelineRegistrationFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PipelineRegistrationFinder())
