"""The static-embedding tier: distillation, its cache, the skill, and torch-free inference.

The encoder is the tiny 2-layer, 32-wide BERT of ``extract_fixtures`` (the MiniLM
tokenizer, random weights): distilling its 29.5k tokens takes well under a second, so no
vocabulary limit is needed. Each test gets its own cache folder through
``SLMSTACK_CACHE``, the documented knob.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fixtures import INTENTS, QUERIES, TRAIN
from slmstack import ConfigError, load
from slmstack.models import resolve
from slmstack.models.static import StaticEmbeddings, cache_folder, load_or_distill
from slmstack.skills.static_classifier import StaticTextClassifier


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from extract_fixtures import tiny_encoder

    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SLMSTACK_CACHE", str(folder))
    return folder


def _key(p):
    return (p.label, p.confidence, tuple((s.label, s.score) for s in p.scores), p.abstained)


# ---------------------------------------------------------------------- embeddings
def test_encode_is_the_normalised_mean_of_known_token_rows(encoder: Path):
    static = load_or_distill(resolve(str(encoder)), dims=8)
    texts = ["where is my card", "", "🙂 🙂", "refund", "a much longer text " * 50]
    got = static.encode_counted(texts)
    tok = static.tokenizer
    for i, text in enumerate(texts):
        ids = tok.encode(text, add_special_tokens=False).ids
        rows = static.vectors[ids]
        want = rows.sum(axis=0) if ids else np.zeros(8, np.float32)
        norm = np.linalg.norm(want)
        want = want / norm if norm > 0 else want
        np.testing.assert_allclose(got.vectors[i], want, rtol=1e-5, atol=1e-6)
        assert got.n_tokens[i] == len(ids)
    # the emoji is [UNK]: a zero row, so the text has no known token and a zero vector
    assert got.n_tokens[2] == 2 and got.n_known[2] == 0 and not got.vectors[2].any()
    assert got.n_tokens[4] > 128, "the base's 128-token truncation must be off"
    # a batch gives the same vectors as one text at a time
    one_by_one = np.vstack([static.encode([t]) for t in texts])
    np.testing.assert_allclose(one_by_one, got.vectors, rtol=1e-6, atol=1e-7)


TRICKY = [
    "Where is my card?!",
    "  two   spaces ",
    "tab\tseparated\nlines",
    "naïve café",
    "emoji 🙂 here",
    "[CLS] literal [SEP]",
    "x[MASK]y",
    "don't stop",
    "a\x1cb",
    "a\xa0b",
    "中文 text",
    "supercalifragilistic" * 8,
    "",
    "   ",
    "ÀÉÎ accents",
    "where is my card?!",
]


def test_the_word_cache_gives_the_tokenizers_ids(encoder: Path):
    from slmstack.models.static_tokens import TokenIds, word_cache_is_exact

    static = load_or_distill(resolve(str(encoder)), dims=8)
    assert word_cache_is_exact(static.tokenizer_json)
    ids = TokenIds(static.tokenizer, use_word_cache=True, max_words=5)
    want = [static.tokenizer.encode(t, add_special_tokens=False).ids for t in TRICKY]
    assert ids(TRICKY) == want
    assert ids(TRICKY[::-1]) == want[::-1]  # again, from the cache
    assert ids(["solo"]) == [static.tokenizer.encode("solo", add_special_tokens=False).ids]
    assert list(ids._words) == ["solo"], "a full cache is cleared, bounding memory"


def test_special_and_unused_tokens_have_zero_rows(encoder: Path):
    static = load_or_distill(resolve(str(encoder)), dims=8)
    vocab = static.tokenizer.get_vocab()
    for token in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[unused7]"):
        assert not static.vectors[vocab[token]].any(), token
    assert static.vectors[vocab["card"]].any()
    assert static.meta["tokens"] == int(static.known.sum())


def test_the_cache_is_reused_and_keyed_by_dims(encoder: Path, cache: Path):
    source = resolve(str(encoder))
    first = load_or_distill(source, dims=8)
    assert first.meta["cached"] is False
    folder = cache_folder(source, 8)
    assert folder.parent == cache / "static"
    assert not list(folder.glob("*.pkl")) and (folder / "vectors.safetensors").is_file()
    stamp = (folder / "vectors.safetensors").stat().st_mtime_ns
    second = load_or_distill(source, dims=8)
    assert second.meta["cached"] is True
    assert (folder / "vectors.safetensors").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert load_or_distill(source, dims=4).meta["cached"] is False  # another key


def test_a_broken_cache_says_how_to_fix_it(encoder: Path):
    from slmstack.errors import ArtifactError

    source = resolve(str(encoder))
    folder = cache_folder(source, 8)
    load_or_distill(source, dims=8)
    (folder / "vectors.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="Delete the folder"):
        load_or_distill(source, dims=8)


def test_dims_wider_than_the_encoder_is_a_clear_error(encoder: Path):
    with pytest.raises(ConfigError, match=r"dims=64 is wider .* Pass dims <= 32"):
        load_or_distill(resolve(str(encoder)), dims=64)


def test_a_mismatched_matrix_is_refused(encoder: Path):
    from slmstack.errors import ArtifactError

    static = load_or_distill(resolve(str(encoder)), dims=8)
    with pytest.raises(ArtifactError, match="different models"):
        StaticEmbeddings(static.tokenizer_json, static.vectors[:100])


# ---------------------------------------------------------------------- the skill
def test_fit_predict_save_load_round_trip(encoder: Path, tmp_path: Path):
    skill = StaticTextClassifier(base=str(encoder), dims=16, seed=0).fit(TRAIN)
    assert skill.static_.meta["cached"] is False
    fitted = skill.predict([ex.text for ex in TRAIN])
    train_acc = np.mean([p.label == ex.label for p, ex in zip(fitted, TRAIN, strict=True)])
    assert train_acc >= 0.9, "a bag of distinct words must be learned"
    preds = skill.predict(QUERIES)
    assert all(len(p.scores) == 3 and p.usage.input_tokens > 0 for p in preds)
    assert all(0 < p.confidence <= 1 for p in preds)
    assert set(skill.metrics_) >= {"val_accuracy", "val_ece", "temperature"}
    folder = skill.save(tmp_path / "skill")
    assert (folder / "tokenizer.json").is_file() and (folder / "static.safetensors").is_file()
    again = load(folder)
    assert type(again) is StaticTextClassifier
    assert [_key(p) for p in again.predict(QUERIES)] == [_key(p) for p in preds]
    proba = again.predict_proba(QUERIES)
    assert proba.shape == (len(QUERIES), len(INTENTS))
    np.testing.assert_allclose(proba.max(axis=1), [p.confidence for p in preds])
    assert again.predict_proba([]).shape == (0, len(INTENTS))


def test_word_ngram_rows_equal_scikit_learns_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from slmstack.skills._word_ngrams import WordNgrams

    train = ["Where is my card?", "my card, my card never came", "card arrival time",
             "Überweisung fehlgeschlagen heute", "top up failed", "top up my card"]  # fmt: skip
    texts = [*train, "is my card arriving", "nothing known here", "", "card card card"]
    grams = WordNgrams.fit(train, n=2, min_df=1)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit(train)
    np.testing.assert_allclose(grams.matrix(texts).toarray(), vec.transform(texts).toarray(),
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    assert grams.columns() == vec.get_feature_names_out().tolist()
    weight = np.random.default_rng(0).normal(size=(3, len(grams))).astype(np.float32)
    np.testing.assert_allclose(grams.scores(texts, np.ascontiguousarray(weight.T)),
                               vec.transform(texts).toarray() @ weight.T, rtol=1e-5, atol=1e-6)  # fmt: skip
    assert [len(c) for c, _ in grams.rows(texts)][-3:] == [0, 0, 1]  # unknown, empty, "card"


def test_word_order_reaches_the_head_through_bigrams(encoder: Path, tmp_path: Path):
    """Same words, two orders, two labels: the static vector alone cannot tell them apart."""
    from slmstack import Example

    ends = ["today", "again", "twice", "now", "here", "once"]
    data = [Example(f"money transfer failed {e}", "transfer") for e in ends] + [
        Example(f"failed money transfer {e}", "money") for e in ends
    ]
    queries = ["money transfer failed later", "failed money transfer later"]
    plain = StaticTextClassifier(base=str(encoder), dims=16, word_ngrams=0).fit(data)
    p = plain.predict_proba(queries)
    np.testing.assert_allclose(p[0], p[1], atol=1e-6)  # a bag of the same tokens
    assert not (plain.save(tmp_path / "plain") / "ngrams.json").exists()
    skill = StaticTextClassifier(base=str(encoder), dims=16, val_fraction=0.34).fit(data)
    assert [x.label for x in skill.predict(queries)] == ["transfer", "money"]
    folder = skill.save(tmp_path / "grams")
    assert "transfer failed" in json.loads((folder / "ngrams.json").read_text())
    np.testing.assert_allclose(load(folder).predict_proba(queries), skill.predict_proba(queries))


def test_long_inputs_are_predicted_in_chunks_with_the_same_answers(
    encoder: Path, monkeypatch: pytest.MonkeyPatch
):
    """Slices keep the temporaries small; an answer must not depend on its neighbours."""
    from slmstack.skills import static_classifier

    skill = StaticTextClassifier(base=str(encoder), dims=16).fit(TRAIN)
    texts = [ex.text for ex in TRAIN] + list(QUERIES) + ["🙂"]
    one_by_one = [skill.predict([t])[0] for t in texts]
    proba_one = np.vstack([skill.predict_proba([t]) for t in texts])
    monkeypatch.setattr(static_classifier, "_CHUNK", 4)
    chunked = skill.predict(texts)
    assert len(chunked) == len(texts) > 4 and len(texts) % 4 != 0
    assert [p.label for p in chunked] == [p.label for p in one_by_one]
    np.testing.assert_allclose(  # float32 sums differ in the last bits with the batch shape
        [p.confidence for p in chunked], [p.confidence for p in one_by_one], rtol=1e-5
    )
    assert [p.warnings for p in chunked] == [p.warnings for p in one_by_one]
    assert [p.usage.input_tokens for p in chunked] == [p.usage.input_tokens for p in one_by_one]
    np.testing.assert_allclose(skill.predict_proba(texts), proba_one, rtol=1e-5)
    assert skill.predict_proba([]).shape == (0, len(INTENTS))


def test_a_second_fit_does_not_distil_again(encoder: Path):
    StaticTextClassifier(base=str(encoder), dims=16).fit(TRAIN)
    second = StaticTextClassifier(base=str(encoder), dims=16, seed=1).fit(TRAIN)
    assert second.static_.meta["cached"] is True
    assert "cached" not in second.distillation_  # a fact about this process, not the skill


def test_unknown_only_text_is_flagged(encoder: Path):
    skill = StaticTextClassifier(base=str(encoder), dims=16).fit(TRAIN)
    (pred,) = skill.predict(["🙂"])
    assert pred.label is not None and "static vocabulary" in pred.warnings[0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dims": 0}, r"'dims' parameter of StaticTextClassifier must be an int >= 2\. Got 0"),
        ({"head_c": -1.0}, r"'head_c' parameter .* must be a float > 0"),
        ({"val_fraction": 1.0}, r"'val_fraction' parameter"),
        ({"dims": 64}, r"Pass dims <= 32"),
        ({"word_ngrams": -1}, r"'word_ngrams' parameter .* must be an int >= 0"),
        ({"ngram_scale": 0.0}, r"'ngram_scale' parameter .* must be a float > 0"),
    ],
)
def test_bad_params_are_clear_errors(encoder: Path, params, message):
    with pytest.raises(ConfigError, match=message):
        StaticTextClassifier(base=str(encoder), **params).fit(TRAIN)


_BLOCK_TORCH = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "sklearn", "scipy"}:
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
from slmstack import load
skill = load(sys.argv[1])
preds = skill.predict(json.loads(sys.argv[2]))
assert "torch" not in sys.modules
print(json.dumps([[p.label, p.confidence, [[s.label, s.score] for s in p.scores]]
                  for p in preds]))
"""


def test_a_loaded_skill_predicts_where_torch_cannot_be_imported(encoder: Path, tmp_path: Path):
    skill = StaticTextClassifier(base=str(encoder), dims=16).fit(TRAIN)
    folder = skill.save(tmp_path / "skill")
    texts = [*QUERIES, ""]
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_BLOCK_TORCH), str(folder), json.dumps(texts)],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = [[p.label, p.confidence, [[s.label, s.score] for s in p.scores]]
            for p in skill.predict(texts)]  # fmt: skip
    assert got == want


def test_the_light_install_predicts(encoder: Path, tmp_path: Path):
    """``pip install '.[onnx,serve,workflows]'`` (no torch, no scikit-learn), made by CI."""
    python = os.environ.get("SLMSTACK_LIGHT_PYTHON")
    if not python:
        if os.environ.get("CI"):
            pytest.fail("CI must set SLMSTACK_LIGHT_PYTHON (scripts/test.sh makes that venv)")
        pytest.skip("set SLMSTACK_LIGHT_PYTHON to a venv with slmstack[onnx,serve,workflows]")
    skill = StaticTextClassifier(base=str(encoder), dims=16).fit(TRAIN)
    folder = skill.save(tmp_path / "skill")
    proc = subprocess.run(
        [python, "-c", textwrap.dedent(_BLOCK_TORCH), str(folder), json.dumps(QUERIES)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = [[p.label, p.confidence, [[s.label, s.score] for s in p.scores]]
            for p in skill.predict(QUERIES)]  # fmt: skip
    assert json.loads(proc.stdout) == want


_FIT_WITHOUT_TORCH = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"blocked: {name}", name="torch")
        return None

sys.meta_path.insert(0, Block())
from fixtures import TRAIN
from slmstack import MissingDependencyError
from slmstack.skills.static_classifier import StaticTextClassifier
try:
    StaticTextClassifier(base=sys.argv[1], dims=16).fit(TRAIN)
except MissingDependencyError as exc:
    print(exc)
"""


def test_training_without_torch_names_the_extra(encoder: Path):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FIT_WITHOUT_TORCH), str(encoder)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "needs the 'torch' package" in proc.stdout
    assert "pip install 'slmstack[train]'" in proc.stdout


# ---------------------------------------------------------------------- CLI
runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "intents.csv"
    rows = ["text,label"] + [f"{t},{label}" for label, texts in INTENTS.items() for t in texts]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cli_trains_a_static_classifier(encoder: Path, data: Path, tmp_path: Path):
    from slmstack.cli.app import app

    out = tmp_path / "static"
    result = runner.invoke(
        app, ["train", "StaticTextClassifier", str(data), "--out", str(out),
              "--set", f"base={encoder}", "--set", "dims=16", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["skill"] == (
        "slmstack.StaticTextClassifier.v1"
    )


def test_cli_classify_base_static(encoder: Path, data: Path, tmp_path: Path):
    from slmstack.cli.app import app

    finetune = runner.invoke(
        app, ["train", "classify", str(data), "--out", str(tmp_path / "a"),
              "--base", "static", "--strategy", "finetune"],
    )  # fmt: skip
    assert finetune.exit_code == 2 and "Use --strategy head" in finetune.output
    assert not (tmp_path / "a").exists()
    # the tiny encoder is 32 wide: the default dims (256) is refused, naming the fix
    wide = runner.invoke(
        app, ["train", "classify", str(data), "--out", str(tmp_path / "b"),
              "--base", f"static:{encoder}"],
    )  # fmt: skip
    assert wide.exit_code == 2 and "Pass dims <= 32" in wide.output


def test_a_folder_missing_its_ngrams_names_the_file(encoder: Path, tmp_path: Path):
    from slmstack.errors import ArtifactError

    folder = StaticTextClassifier(base=str(encoder), dims=16).fit(TRAIN).save(tmp_path / "s")
    (folder / "ngrams.json").unlink()
    with pytest.raises(ArtifactError, match=r"ngrams\.json"):
        load(folder)
