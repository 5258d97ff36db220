"""Export trained skills to faster runtimes: ONNX fp32 and int8, checked before written.

``export_classifier`` traces a :class:`~slmstack.skills.classifier.TextClassifier` into
one ONNX graph, checks it against the torch skill (parity), optionally quantizes it to
int8 with the fastest recipe that passes an accuracy gate, and writes an
:class:`~slmstack.skills.onnx_classifier.OnnxTextClassifier` folder that predicts
without torch. ``export_tagger`` does the same for an
:class:`~slmstack.skills.tagger.EntityTagger` (gate: entity F1), writing an
:class:`~slmstack.skills.onnx_tagger.OnnxEntityTagger`. ``export_faq`` exports a
:class:`~slmstack.skills.faq.FAQAnswerer`'s sentence encoder (gate: answer accuracy); the
result is the same skill kind, answering with onnxruntime instead of torch.
"""

from slmstack.export.candidates import Candidate, ExportResult
from slmstack.export.checks import GateReport, ParityLimits, ParityReport
from slmstack.export.classifier import export_classifier
from slmstack.export.faq import export_faq, read_faq_queries
from slmstack.export.quantize import RECIPES, QuantRecipe, StaticRecipe, recipe
from slmstack.export.tagger import export_tagger

__all__ = [
    "RECIPES",
    "Candidate",
    "ExportResult",
    "GateReport",
    "ParityLimits",
    "ParityReport",
    "QuantRecipe",
    "StaticRecipe",
    "export_classifier",
    "export_faq",
    "export_tagger",
    "read_faq_queries",
    "recipe",
]
