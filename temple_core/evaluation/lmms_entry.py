"""lmms-eval's plugin hook for temple (entry-point group ``lmms_eval.models``, name ``temple``).

lmms-eval 0.7 loads every entry point of that group when its model registry starts
(``ModelRegistryV2.load_entrypoint_manifests``) and accepts a callable returning a
``ModelManifest``; the class itself (:mod:`.lmms_model`) is imported only when a run asks
for ``--model temple``. Nothing here imports lmms-eval unless lmms-eval calls it.
"""

from __future__ import annotations

MODEL_ID = "temple"
CLASS_PATH = "temple_core.evaluation.lmms_model.TempleLMM"


def manifest():
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)
