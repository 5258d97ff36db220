"""Distillation from an LLM teacher: cached, costed labels and a small student."""

from slmstack.distill.cache import TeacherCache, TeacherLabel, teacher_id, text_key
from slmstack.distill.run import DistillReport, distill, label_with_teacher

__all__ = [
    "DistillReport",
    "TeacherCache",
    "TeacherLabel",
    "distill",
    "label_with_teacher",
    "teacher_id",
    "text_key",
]
