"""``LanguageDetector``: which language a text is in, for routing to regional variants.

It wraps ``langid.py`` (Lui & Baldwin 2012), a naive-Bayes identifier over byte n-grams
for 97 languages that ships its model inside the package and runs offline. ``fit`` takes
examples labelled with language codes: the codes seen become the only languages the
detector labels with (a support desk that serves English, German and French should
never answer "Luxembourgish"), and the examples measure how well it does on them.
langid's three codes for Norwegian (no, nb, nn) count as one: a trained one takes the
posteriors of the others that are not trained.

Confidences and scores are langid's posteriors over all its 97 languages, not
renormalised over the trained ones: renormalised, a Spanish text at a de/en/fr desk
was "en" with confidence 1.0. When langid's top language is none of the trained ones
and the likeliest trained one has under ``other_ratio`` (0.1) of its posterior,
the prediction abstains with ``"other_language"`` and keeps the closest trained language
as its label (a guess, with a confidence near 0), so a route takes its ``default``
branch and a cascade's threshold stops it. ``data`` holds langid's top language over
all 97 and its posterior (``{"language": "es", "probability": 0.99}``). Very short texts
carry little evidence: their confidence stays low whatever they match. A text in which
langid knows no n-gram at all ("ok", "oui", "ja", "Hallo", an order id, a number) gets
only langid's prior, English first, whatever its language: it abstains with
``"no_language_evidence"`` (keeping the prior's likeliest trained language as its guess),
so a route takes ``default`` rather than sending "oui" down the German branch.

Example:
    >>> from slmstack import Example
    >>> det = LanguageDetector().fit([Example("where is my card", "en"),
    ...                              Example("wo ist meine Karte", "de")])  # doctest: +SKIP
    >>> det.predict(["Ich habe mein Passwort vergessen"])[0].label  # doctest: +SKIP
    'de'
    >>> det.predict(["¿Dónde está mi tarjeta?"])[0].abstained  # doctest: +SKIP
    'other_language'
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from slmstack.artifacts import data_hash
from slmstack.data.validation import drop_duplicates, validate_examples
from slmstack.errors import ArtifactError, DataError, MissingDependencyError
from slmstack.skills._labels import saved_labels, write_labels
from slmstack.skills.base import Skill, Tensors
from slmstack.skills.kinds import LabelledTexts
from slmstack.skills.params import Check, Interval
from slmstack.types import Example, LabelScore, Prediction, Usage

# langid splits Norwegian into no, nb (Bokmål) and nn (Nynorsk), and puts plain
# Norwegian in any of them: a desk that trains one of these codes gets the others'
# posteriors too ("no" alone abstained on 2 of 4 Norwegian requests as "nb").
_SAME_LANGUAGE = (frozenset({"no", "nb", "nn"}),)

_lock = threading.Lock()
_base: Any = None


def _full_model() -> Any:
    """The full langid model, decoded once per process (it takes seconds) and shared."""
    global _base
    with _lock:
        if _base is None:
            try:
                from langid.langid import LanguageIdentifier, model
            except ImportError as exc:
                raise MissingDependencyError("langid", "workflows", "LanguageDetector") from exc
            _base = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        return _base


class LanguageDetector(LabelledTexts, Skill):
    """Language identification into the trained languages, abstaining on any other."""

    skill_name = "slmstack.LanguageDetector.v1"
    produces: ClassVar[frozenset[str]] = frozenset({"label", "scores", "data"})
    fitted_attribute = "classes_"
    constraints: ClassVar[Mapping[str, Check]] = {
        "top_k": Interval(int, 1, None), "other_ratio": Interval(float, 0.0, 1.0)
    }  # fmt: skip

    def __init__(self, *, top_k: int = 3, other_ratio: float = 0.1):
        self.top_k = top_k  # languages listed in each prediction's scores
        # Abstain only when the likeliest trained language has under this share of the
        # top language's posterior: short texts lean to a neighbour ("I forgot my
        # password" is French to langid, English at 0.38 of its weight).
        self.other_ratio = other_ratio

    def _restrict(self, languages: Sequence[str]) -> None:
        """Index the trained languages in the full model, whose posteriors are all kept.

        A trained language also takes the columns of langid's other codes for it
        (``_SAME_LANGUAGE``) that are not trained themselves.
        """
        self.classes_ = list(languages)
        index = list(_full_model().nb_classes)
        self.columns_ = []
        for lang in languages:
            same = next((g for g in _SAME_LANGUAGE if lang in g), frozenset({lang}))
            codes = [lang, *sorted(c for c in same - {lang} if c not in languages)]
            self.columns_.append([index.index(c) for c in codes])

    def _rank(self, text: str) -> tuple[list[tuple[str, float]], str, float, bool]:
        """Trained languages (likeliest first), the top one of all 97, and the evidence.

        Every posterior is over all 97 languages of langid's model. The last item says
        whether langid matched any n-gram of the text: without one, the posteriors are
        only its prior.
        """
        base = _full_model()  # only read: set_languages is never called on it
        features = base.instance2fv(text)
        log_p = base.nb_classprobs(features).astype(np.float64)
        post = np.exp(log_p - log_p.max())
        post /= post.sum()
        top = int(np.argmax(log_p))
        # Order by log-posterior: a text in another language can round every trained
        # language's posterior to 0.0, and the closest one is still the guess.
        log_lang = [float(np.logaddexp.reduce(log_p[cols])) for cols in self.columns_]
        order = sorted(range(len(self.classes_)), key=lambda i: -log_lang[i])
        ranked = [(self.classes_[i], float(post[self.columns_[i]].sum())) for i in order]
        return ranked, str(base.nb_classes[top]), float(post[top]), bool(features.any())

    def fit(self, examples: Sequence[Example]) -> Self:
        """Learn the language set from the labels; measure accuracy on the examples."""
        self._check_params()
        start = time.perf_counter()
        examples, dropped = drop_duplicates(examples)
        validate_examples(examples)
        languages = sorted({ex.label for ex in examples})
        known = set(_full_model().nb_classes)
        unknown = [lang for lang in languages if lang not in known]
        if unknown:
            raise DataError(_unknown_labels(unknown, known))
        self._restrict(languages)
        # An example langid puts in another language (abstained) counts as wrong.
        preds = self._predict([ex.text for ex in examples])
        correct = sum(p.label == ex.label and p.abstained is None
                      for p, ex in zip(preds, examples, strict=True))  # fmt: skip
        self.metrics_ = {"train_accuracy": correct / len(examples), "n": float(len(examples))}
        self.provenance_ = self._provenance(
            base={"ref": "langid.py", "origin": "package",
                  "sha256": _model_sha256(), "licence": "BSD-2-Clause"},
            data_sha256=data_hash([(ex.text, ex.label) for ex in examples]),
            rows=len(examples), duplicates_dropped=dropped,
            seconds=time.perf_counter() - start, metrics=self.metrics_,
        )  # fmt: skip
        return self

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Language code and posterior for each text; ``other_language`` when it is none."""
        out = []
        for text in texts:
            start = time.perf_counter()
            ranked, top, top_p, evidence = self._rank(text)
            ranked = ranked[: self.top_k]
            abstained = None
            if not evidence:
                abstained = "no_language_evidence"
            elif not self._trained(ranked[0][1], top, top_p):
                abstained = "other_language"
            out.append(
                Prediction(
                    label=ranked[0][0],
                    confidence=ranked[0][1],
                    scores=tuple(LabelScore(lang, p) for lang, p in ranked),
                    data={"language": top, "probability": top_p},
                    abstained=abstained,
                    usage=Usage(latency_ms=(time.perf_counter() - start) * 1000),
                )
            )
        return out

    def _trained(self, best: float, top: str, top_p: float) -> bool:
        """Whether the text is in a trained language: the top one, or one near it."""
        covered = {str(_full_model().nb_classes[c]) for cols in self.columns_ for c in cols}
        return top in covered or best >= self.other_ratio * top_p

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return {"labels": self.classes_, "langid_version": metadata.version("langid")}, {}

    def _write_extra(self, folder: Path) -> None:
        write_labels(folder, self.classes_)

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        recorded = self.provenance_.base.get("sha256")
        if recorded != _model_sha256():
            raise ArtifactError(
                f"{folder} was trained with another langid model (sha256 {recorded}); "
                "install the langid version in its config, or retrain the skill."
            )
        self._restrict(saved_labels(folder, config))
        self.metrics_ = dict(self.provenance_.metrics)

    def _card(self) -> dict[str, Any]:
        return {"Method": "langid.py naive Bayes over byte n-grams, labelling only with the "
                "trained languages; abstains with 'other_language' when its top language "
                "over all 97 is another, and with 'no_language_evidence' when it "
                "knows no n-gram of the text",
                "Languages": ", ".join(self.classes_)}  # fmt: skip


def _unknown_labels(unknown: Sequence[str], known: set[str]) -> str:
    """The error for labels langid does not know, with the code each one likely meant.

    For regional codes ("en-GB") it says how to route regions, which langid cannot tell.
    """
    base = {lab: lab.strip().lower().replace("_", "-").split("-")[0] for lab in unknown}
    meant = [f"{lab!r} → {code!r}" for lab, code in base.items() if code in known]
    message = (
        f"labels {list(unknown)} are not language codes langid knows; use ISO 639-1 codes "
        f"such as {', '.join(sorted(known)[:12])}, ..."
    )
    if meant:
        message += f" (did you mean {', '.join(meant)}?)"
    if any(base[lab] in known and base[lab] != lab.strip().lower() for lab in unknown):
        message += (
            ". A LanguageDetector tells languages apart, not regions or dialects (en-GB "
            "and en-US are both 'en'): label by language. A message rarely shows its "
            "region, so serve one workflow per region (the caller picks "
            "/v1/workflows/{name}/run by the customer's region), or, where the regions' "
            "wording differs, route on a TextClassifier trained on examples labelled by region"
        )
    return message


def _model_sha256() -> str:
    """sha256 of langid's packed model string: the base this skill depends on."""
    from langid.langid import model

    return hashlib.sha256(model.encode() if isinstance(model, str) else model).hexdigest()
