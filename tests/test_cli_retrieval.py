import json

from typer.testing import CliRunner

from slmstack.backends import Backend, Completion, CompletionRequest, runtimes
from slmstack.cli.app import app

runner = CliRunner()

KB_CSV = """id,question,answer,alternates
password,How do I reset my password?,Click 'Forgot password' on the login page.,"I forgot my password|lost my password|password reset link"
refund,How do I get a refund?,Open Orders and press 'Request refund'.,"I want my money back|refund my order|return for a refund"
shipping,How long does shipping take?,Parcels arrive in 3 to 5 days.,"when will my parcel arrive|delivery time|days for delivery"
"""
EVAL_CSV = """text,label
i can't remember my password,password
give me my money back,refund
what is the capital of france,oos
play some jazz music,
"""


class FirstSentence(Backend):
    name = "first-sentence"

    def complete(self, request: CompletionRequest) -> Completion:
        user = request.messages[-1].content
        first = user.split("[1] ", 1)[1].split(": ", 1)[-1].split(".")[0]
        return Completion(f"1. {first}. [1]", self.name)


runtimes.register("test-first-sentence")(lambda model, **kw: FirstSentence())


def test_train_predict_eval_faq(tmp_path):
    kb = tmp_path / "kb.csv"
    kb.write_text(KB_CSV)
    data = tmp_path / "eval.csv"
    data.write_text(EVAL_CSV)
    out = tmp_path / "faq"
    result = runner.invoke(app, ["train", "faq", str(kb), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["entries"] == 3 and summary["questions"] == 12
    result = runner.invoke(app, ["predict", str(out), "refund please", "--json"])
    assert result.exit_code == 0, result.output
    (pred,) = json.loads(result.stdout)
    assert pred["label"] == "refund" and pred["text"] == "Open Orders and press 'Request refund'."
    result = runner.invoke(app, ["eval", str(out), str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_in_scope"] == 2 and report["n_out_of_scope"] == 2
    assert report["top1_accuracy"] == 1.0
    assert report["abstain_recall"] == 1.0 and report["abstain_precision"] == 1.0
    typo = tmp_path / "typo.csv"
    typo.write_text(EVAL_CSV.replace(",refund", ",refnud", 1))
    assert typo.read_text() != EVAL_CSV
    result = runner.invoke(app, ["eval", str(out), str(typo), "--json"])
    assert result.exit_code == 2 and "not in the skill's knowledge base: 'refnud'" in result.output
    strict = tmp_path / "strict"  # answers nothing: retrieval is still judged on its own
    result = runner.invoke(app, ["train", "faq", str(kb), "--out", str(strict), "--threshold",
                                 "0.9999"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "threshold 1.000 fixed (--threshold), measured on" in result.output
    assert "threshold rule: fixed by the threshold parameter" in result.output
    report = json.loads(runner.invoke(app, ["eval", str(strict), str(data), "--json"]).stdout)
    assert report["abstain_rate"] == 1.0 and report["top1_accuracy"] == 1.0
    assert report["answered_accuracy"] is None  # not 0.0: there is no answer to be wrong


def test_train_faq_reports_bad_kb_in_one_line(tmp_path):
    kb = tmp_path / "kb.csv"
    kb.write_text("q,a\nhello,world\n")
    result = runner.invoke(app, ["train", "faq", str(kb), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "missing question column 'question'" in result.output


def test_build_troubleshooter_from_a_folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "printer.md").write_text("# Paper jam\n\nOpen tray 2. Remove the sheet.\n")
    out = tmp_path / "ts"
    args = ["train", "troubleshoot", str(docs), "--out", str(out), "--json"]
    result = runner.invoke(app, [*args, "--runtime", "test-first-sentence"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks"] == 1
    result = runner.invoke(app, ["predict", str(out), "paper jam in the printer", "--json"])
    assert result.exit_code == 0, result.output
    (pred,) = json.loads(result.stdout)
    assert pred["text"] == "1. Open tray 2."
    assert pred["data"]["citations"][0]["source"].endswith("printer.md")
    data = tmp_path / "eval.csv"
    data.write_text("text,label\npaper jam in the printer,printer.md\nbest pizza in town,\n")
    result = runner.invoke(app, ["eval", str(out), str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["citation_hit_rate"] == 1.0 and report["abstain_recall"] == 1.0
    data.write_text("text,label\npaper jam in the printer,manuals/printer.md\n")
    result = runner.invoke(app, ["eval", str(out), str(data), "--json"])  # before generating
    assert result.exit_code == 2 and "1 expected sources match no document" in result.output
    assert "'manuals/printer.md'" in result.output


def test_train_faq_and_troubleshoot_refuse_an_existing_skill_before_reading_data(tmp_path):
    kb = tmp_path / "kb.csv"
    kb.write_text(KB_CSV)
    out = tmp_path / "faq"
    result = runner.invoke(app, ["train", "faq", str(kb), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["duplicates_dropped"] == 0
    missing = tmp_path / "missing.csv"  # --out is checked first: no error about this file
    for kind in ("faq", "troubleshoot"):
        result = runner.invoke(app, ["train", kind, str(missing), "--out", str(out)])
        assert result.exit_code == 2
        assert "already holds a saved skill" in result.output and "--force" in result.output
    result = runner.invoke(app, ["train", "faq", str(kb), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "printer.md").write_text("# Paper jam\n\nOpen tray 2. Remove the sheet.\n")
    args = ["train", "troubleshoot", str(docs), "--out", str(out), "--force"]
    result = runner.invoke(app, [*args, "--runtime", "test-first-sentence"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["skill"] == "slmstack.Troubleshooter.v1"


def test_train_troubleshoot_for_an_openai_server_needs_its_address(tmp_path):
    docs = tmp_path / "m.md"
    docs.write_text("# Paper jam\n\n1. Open tray 2.\n2. Pull the sheet out.\n")
    res = runner.invoke(app, ["train", "troubleshoot", str(docs), "--out", str(tmp_path / "t"),
                              "--generator", "gpt-4o-mini", "--runtime", "openai"])  # fmt: skip
    assert res.exit_code == 2 and "--option base_url=" in res.output
    assert not (tmp_path / "t").exists()


def test_train_troubleshoot_extractive_needs_no_generator(tmp_path):
    docs = tmp_path / "m.md"
    docs.write_text("# Paper jam\n\nOpen tray 2.\nPull the sheet out.\n")
    out = tmp_path / "t"
    res = runner.invoke(app, ["train", "troubleshoot", str(docs), "--out", str(out),
                              "--generator", "none", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["generator"] is None
    result = runner.invoke(app, ["predict", str(out), "paper jam in the printer", "--json"])
    assert result.exit_code == 0, result.output
    (pred,) = json.loads(result.stdout)
    assert pred["text"] == "1. Open tray 2.\n2. Pull the sheet out." and pred["data"]["quoted"]
    res = runner.invoke(app, ["train", "troubleshoot", str(docs), "--out", str(tmp_path / "u"),
                              "--generator", "none", "--option", "base_url=http://x/v1"])  # fmt: skip
    assert res.exit_code == 2 and "--generator none has none" in res.output
    assert not (tmp_path / "u").exists()
