"""transformers pipelines for RGB-T (visible + infrared) pairs: "rgbt-semantic-segmentation", "rgbt-object-detection".

Each input is a dict ``{"visible": image, "infrared": image}`` (either may be left out: the model fills a missing
modality from the other) or one 4-channel RGBT image (visible channels first); an image is a PIL image, a numpy
array, a torch tensor or a file path. A list of inputs gives a list of results. Outputs follow transformers'
"image-segmentation" (semantic) and "object-detection" pipelines.

Saved IVGF task models name these classes in ``config.custom_pipelines`` and carry this file, so
``pipeline(task, model=folder, trust_remote_code=True)`` works where ``ivgf_hf`` is not installed; ``ivgf_hf``
registers them in-process (``ivgf_hf.pipelines``).
"""

import os

import numpy as np
import torch
from transformers import Pipeline
from transformers.utils import is_vision_available

if is_vision_available():
    from PIL import Image

__all__ = [
    "IVGFSemanticSegmentationPipeline",
    "IVGFObjectDetectionPipeline",
    "PIPELINE_TASKS",
    "custom_pipelines",
]


def _read(image, name: str):
    """A path is opened with PIL (mode kept: RGBA, L, 16-bit); other images are returned as they are."""
    if isinstance(image, (str, os.PathLike)):
        if not is_vision_available():
            raise ImportError(f"{name}: reading image files needs Pillow (pip install pillow)")
        with Image.open(image) as opened:
            opened.load()
            return opened.copy()
    return image


def _image_size(image) -> tuple:
    """(height, width) of one raw image, with the image processor's layout rules: PIL images; numpy arrays HW, HWC
    (else CHW); torch tensors HW, CHW (else HWC); 1, 3 or 4 channels."""
    if hasattr(image, "getbands"):
        return image.height, image.width
    shape = tuple(image.shape)
    if len(shape) == 3:
        channels_last = shape[-1] in (1, 3, 4) and (isinstance(image, np.ndarray) or shape[0] not in (1, 3, 4))
        return shape[:2] if channels_last else shape[1:]
    return shape[-2:]


class _RGBTPipeline(Pipeline):
    """Shared input handling: one pair (or RGBT image) per call of ``preprocess``."""

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def preprocess(self, inputs):
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - {"visible", "infrared"})
            if unknown or not inputs:
                raise ValueError(
                    f"an RGB-T input dict takes the keys 'visible' and/or 'infrared', got {sorted(inputs)}"
                )
            visible = _read(inputs.get("visible"), "visible")
            infrared = _read(inputs.get("infrared"), "infrared")
        else:  # one 4-channel RGBT image; the image processor splits it
            visible, infrared = _read(inputs, "image"), None
        if visible is None and infrared is None:
            raise ValueError("an RGB-T input needs a 'visible' or an 'infrared' image; both are None")
        processed = self.image_processor(images=visible, images_ir=infrared, return_tensors="pt")
        size = _image_size(visible if visible is not None else infrared)
        processed["target_size"] = torch.tensor([size])
        return processed

    def _model_inputs(self, model_inputs) -> dict:
        dtype = self.model.dtype
        return {key: model_inputs[key].to(dtype) for key in ("pixel_values", "pixel_values_ir") if key in model_inputs}


class IVGFSemanticSegmentationPipeline(_RGBTPipeline):
    """RGB-T semantic segmentation: one ``{"score": None, "label": str, "mask": PIL "L" image}`` per class present,
    the mask 255 on that class's pixels at the input image's size (as transformers' "image-segmentation" pipeline
    with ``subtask="semantic"``)."""

    def _sanitize_parameters(self, **kwargs):
        if kwargs:
            raise TypeError(f"rgbt-semantic-segmentation takes no parameters, got {sorted(kwargs)}")
        return {}, {}, {}

    def _forward(self, model_inputs):
        outputs = self.model(**self._model_inputs(model_inputs))
        return {"logits": outputs.logits, "target_size": model_inputs["target_size"]}

    def postprocess(self, model_outputs):
        size = tuple(model_outputs["target_size"][0].tolist())
        label_map = self.image_processor.post_process_semantic_segmentation(
            model_outputs["logits"].float(), target_sizes=[size]
        )[0].numpy()
        results = []
        for class_id in np.unique(label_map):
            mask = (label_map == class_id).astype(np.uint8) * 255
            label = self.model.config.id2label.get(int(class_id), str(int(class_id)))
            results.append({"score": None, "label": label, "mask": Image.fromarray(mask)})
        return results


class IVGFObjectDetectionPipeline(_RGBTPipeline):
    """RGB-T object detection: ``{"score": float, "label": str, "box": {"xmin", "ymin", "xmax", "ymax"}}`` per
    detection above ``threshold`` (default 0.5), boxes in pixels of the input image (as transformers'
    "object-detection" pipeline)."""

    def _sanitize_parameters(self, threshold=None, **kwargs):
        if kwargs:
            raise TypeError(f"rgbt-object-detection takes only `threshold`, got {sorted(kwargs)}")
        return {}, {}, ({"threshold": threshold} if threshold is not None else {})

    def _forward(self, model_inputs):
        outputs = self.model(**self._model_inputs(model_inputs))
        return {"detections": outputs.detections, "target_size": model_inputs["target_size"]}

    def postprocess(self, model_outputs, threshold=0.5):
        detections = model_outputs["detections"]
        # one image: a list of one dict, or the dict itself where the pipeline split a batch of several
        detections = detections if isinstance(detections, (list, tuple)) else [detections]
        size = tuple(model_outputs["target_size"][0].tolist())
        result = self.image_processor.post_process_object_detection(
            detections, threshold=threshold, target_sizes=[size]
        )[0]
        id2label = self.model.config.id2label
        return [
            {
                "score": float(score),
                "label": id2label.get(int(label), str(int(label))),
                "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), (int(v) for v in box.tolist()))),
            }
            for score, label, box in zip(result["scores"], result["labels"], result["boxes"])
        ]


# task -> (pipeline class, the auto class of the models it runs, the IVGF model class that carries it)
PIPELINE_TASKS = {
    "rgbt-semantic-segmentation": (
        IVGFSemanticSegmentationPipeline,
        "AutoModelForSemanticSegmentation",
        "IVGFForSemanticSegmentation",
    ),
    "rgbt-object-detection": (IVGFObjectDetectionPipeline, "AutoModelForObjectDetection", "IVGFForObjectDetection"),
}


def custom_pipelines(model_class_name: str) -> dict:
    """The ``config.custom_pipelines`` entry of a saved model of class ``model_class_name`` ({} for none)."""
    return {
        task: {"impl": f"pipeline_ivgf.{pipeline_class.__name__}", "pt": [auto_class], "tf": [], "type": "image"}
        for task, (pipeline_class, auto_class, model_class) in PIPELINE_TASKS.items()
        if model_class == model_class_name
    }
