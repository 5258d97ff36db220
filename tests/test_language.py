"""LanguageDetector: the skill contract, restriction to the trained languages, errors."""

from __future__ import annotations

import pytest

from slmstack import DataError, Example, LanguageDetector
from slmstack.errors import ConfigError

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
    # French is not served: the closer of the two languages is only a guess
    (p,) = det.predict(["J'ai oublié mon mot de passe et je ne peux plus me connecter"])
    assert p.label in {"en", "de"} and p.abstained == "other_language"
    assert p.data["language"] == "fr" and p.data["probability"] > 0.9
    assert det.classes_ == ["de", "en"]


def test_a_text_in_none_of_the_languages_abstains_with_a_low_confidence():
    det = LanguageDetector().fit(TRAIN)
    spanish, dutch, german = det.predict(
        ["¿Cuánto tarda el envío a mi casa?", "Hoe lang duurt de verzending?", TEXTS[1]]
    )
    # Renormalised over de/en/fr, Spanish was "en" at 1.0 and Dutch "de" at 0.997.
    for p, lang in [(spanish, "es"), (dutch, "nl")]:
        assert p.abstained == "other_language" and p.label in {"de", "en", "fr"}
        assert p.confidence < 0.01 and all(s.score < 0.01 for s in p.scores)
        assert p.data == {"language": lang, "probability": pytest.approx(p.data["probability"])}
        assert p.data["probability"] > 0.9
    assert german.abstained is None and german.label == "de" and german.confidence > 0.9
    assert german.data["language"] == "de" and german.data["probability"] == german.confidence


def test_a_route_sends_another_language_to_its_default_branch():
    from slmstack.workflows import RouteStep, TemplateStep, Workflow

    det = LanguageDetector().fit(TRAIN)
    branches = {lang: TemplateStep(lang) for lang in ("de", "en", "fr")}
    wf = Workflow([RouteStep(branches, TemplateStep("other"), skill="lang")], skills={"lang": det})
    assert wf.run("¿Cuánto tarda el envío a mi casa?").output.text == "other"
    assert wf.run(TEXTS[2]).output.text == "fr"


def test_bad_labels():
    with pytest.raises(DataError, match=r"labels \['english'\] are not language codes"):
        LanguageDetector().fit(
            [Example(t, "english") for t in ("hello there", "good morning")]
            + [Example(t, "de") for t in ("hallo", "guten Morgen")]
        )
    with pytest.raises(DataError, match="at least 2 labels"):
        LanguageDetector().fit([Example("hello there", "en"), Example("good morning", "en")])


def test_a_short_text_leaning_to_a_neighbour_keeps_its_trained_language():
    """langid reads "I forgot my password" as French (English at 0.38 of its weight): at an
    en/de desk it stays English, where abstaining on every untrained top language sent it
    to the default branch. A stricter other_ratio abstains on it; Spanish abstains either way."""
    en_de = [ex for ex in TRAIN if ex.label != "fr"]
    det = LanguageDetector().fit(en_de)
    short = det.predict(["I forgot my password"])[0]
    assert (short.label, short.abstained, short.data["language"]) == ("en", None, "fr")
    assert det.predict(["¿Cuánto tarda el envío?"])[0].abstained == "other_language"
    strict = LanguageDetector(other_ratio=0.5).fit(en_de)
    assert strict.predict(["I forgot my password"])[0].abstained == "other_language"
    with pytest.raises(ConfigError, match="other_ratio"):
        LanguageDetector(other_ratio=1.5).fit(en_de)


def test_a_text_without_any_language_evidence_abstains():
    """langid matched no n-gram of "oui", "ja", "ok" or an order id and answered its prior
    (English first): at a German/French desk "oui" went down the German branch."""
    de_fr = [ex for ex in TRAIN if ex.label != "en"]
    det = LanguageDetector().fit(de_fr)
    for text in ["oui", "ja", "ok", "ORD-48213", "12345"]:
        (p,) = det.predict([text])
        assert p.abstained == "no_language_evidence", (text, p)
        assert p.label in {"de", "fr"} and p.confidence < 0.2
    from slmstack.workflows import RouteStep, TemplateStep, Workflow

    branches = {lang: TemplateStep(lang) for lang in ("de", "fr")}
    wf = Workflow([RouteStep(branches, TemplateStep("other"), skill="lang")], skills={"lang": det})
    result = wf.run("oui")
    assert result.output.text == "other"
    (decision,) = [t.decision for t in result.trace[0].walk() if t.decision]
    assert decision.why.startswith("abstained: no_language_evidence")
    assert det.predict(["nein"])[0].abstained is None  # one known n-gram is evidence


def test_a_regional_or_upper_case_label_names_its_language_and_how_to_route_regions():
    """"en-GB"/"de-AT" and "EN" were refused with a list of codes from "af" on, not the
    code they meant nor how a desk routes regional variants."""
    regional = [Example(t, "en-GB") for t in ("where is my parcel", "the card does not work")]
    regional += [Example(t, "de-AT") for t in ("wo ist mein Paket", "die Karte geht nicht")]
    with pytest.raises(DataError, match=r"'de-AT' → 'de', 'en-GB' → 'en'") as err:
        LanguageDetector().fit(regional)
    assert "languages apart, not regions" in str(err.value)
    assert "TextClassifier" in str(err.value)
    upper = [Example(ex.text, ex.label.upper()) for ex in TRAIN]
    with pytest.raises(DataError, match=r"'DE' → 'de', 'EN' → 'en', 'FR' → 'fr'") as err:
        LanguageDetector().fit(upper)
    assert "not regions" not in str(err.value)


NORWEGIAN = [
    "Kortet mitt fungerer ikke",
    "Hvor lang tid tar leveringen?",
    "Jeg har glemt passordet mitt og kan ikke logge inn",
    "Jeg vil returnere hodetelefonene mine",
]


@pytest.mark.parametrize("code", ["no", "nb"])
def test_norwegian_is_one_language_whichever_code_labels_it(code):
    """ISO 639-1 "no" is Norwegian, which langid splits into no, nb (Bokmål) and nn
    (Nynorsk): a desk labelled "no" had plain Norwegian abstain as other_language ("nb")."""
    train = [Example(t, code) for t in NORWEGIAN[:2]] + [ex for ex in TRAIN if ex.label == "en"]
    det = LanguageDetector().fit(train)
    for p in det.predict(NORWEGIAN):
        assert (p.label, p.abstained) == (code, None) and p.confidence > 0.8, p
    assert det.metrics_["train_accuracy"] == 1.0
    # data keeps langid's own top code, and the scores stay posteriors (summing to ≤ 1)
    assert {p.data["language"] for p in det.predict(NORWEGIAN)} == {"nb", "no"}
    assert all(sum(s.score for s in p.scores) <= 1 + 1e-9 for p in det.predict(NORWEGIAN))
