"""LanguageDetector: the skill contract, restriction to the trained languages, errors."""

from __future__ import annotations

import pytest

from slmstack import DataError, Example, LanguageDetector

TRAIN = [
    Example("where is my parcel", "en"),
    Example("the card does not work", "en"),
    Example("wo ist mein Paket", "de"),
    Example("die Karte funktioniert nicht", "de"),
    Example("où est mon colis", "fr"),
    Example("la carte ne fonctionne pas", "fr"),
]
TEXTS = [
    "I forgot my password and cannot log in to my account",
    "Ich habe mein Passwort vergessen und kann mich nicht anmelden",
    "J'ai oublié mon mot de passe et je ne peux plus me connecter",
]

pytestmark = pytest.mark.slow  # langid decodes its model once per process (seconds)


def test_predicts_the_language_of_each_text():
    det = LanguageDetector().fit(TRAIN)
    preds = det.predict(TEXTS)
    assert [p.label for p in preds] == ["en", "de", "fr"]
    assert all(0.5 < p.confidence <= 1.0 for p in preds)
    assert {s.label for s in preds[0].scores} == {"en", "de", "fr"}


def test_only_trained_languages_are_predicted():
    det = LanguageDetector().fit([e for e in TRAIN if e.label != "fr"])
    # French is not served, so a French text goes to the closer of the two languages
    assert det.predict(["J'ai oublié mon mot de passe"])[0].label in {"en", "de"}
    assert det.classes_ == ["de", "en"]


def test_bad_labels():
    with pytest.raises(DataError, match=r"labels \['english'\] are not language codes"):
        LanguageDetector().fit(
            [Example(t, "english") for t in ("hello there", "good morning")]
            + [Example(t, "de") for t in ("hallo", "guten Morgen")]
        )
    with pytest.raises(DataError, match="at least 2 labels"):
        LanguageDetector().fit([Example("hello there", "en"), Example("good morning", "en")])
