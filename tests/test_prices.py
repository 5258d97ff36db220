"""The price table: packaged list prices, user overrides, exact Decimals, and no silent $0."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fakes import FakeBackend
from slmstack.backends import runtimes
from slmstack.costs import PriceTable, from_nano, load_prices, packaged_prices, to_nano
from slmstack.errors import ConfigError, ModelNotFoundError, WorkflowError
from slmstack.workflows import SkillStep, Workflow, load_workflow
from workflow_doubles import KeywordClassifier


class RemoteFake(FakeBackend):
    """A scripted backend that looks like a remote API (it has a base_url): priced per token."""

    def __init__(self, model: str, *, fallbacks=()):
        super().__init__(["ok"], name=model)
        self.base_url = "https://api.example.invalid/v1"
        self.fallbacks = list(fallbacks)


runtimes.register("test-remote")(lambda model, **kw: RemoteFake(model))


@pytest.fixture(autouse=True)
def _no_env_prices(monkeypatch):
    monkeypatch.delenv("SLMSTACK_PRICES", raising=False)


# ---------------------------------------------------------------- the packaged table


def test_packaged_table_has_the_prices_users_quote_with_sources():
    table = packaged_prices()
    gpt4 = table.model("gpt-4")
    assert (gpt4.input_per_1k, gpt4.output_per_1k) == (Decimal("0.03"), Decimal("0.06"))
    assert table.version.startswith("slmstack 20")  # the date the prices were taken
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "claude-3-5-sonnet", "claude-3-haiku"):
        assert table.model(name).input_per_1k > 0
    for name in ("cpu-2vcpu", "cpu-4vcpu", "gpu-a10g", "gpu-l4", "gpu-a100", "gpu-h100"):
        assert table.machine(name).per_hour > 0
    assert table.default_machine == "cpu-2vcpu"
    assert all(p.source for p in [*table.models.values(), *table.machines.values()])
    assert all(isinstance(p.input_per_1k, Decimal) for p in table.models.values())


def test_costs_are_exact_decimals():
    table = load_prices()
    assert table.token_cost("gpt-4", 1000, 500) == Decimal("0.06")
    # 7 tokens of gpt-4o-mini input: 1.05 micro-dollars, exactly; the ledger keeps nano-dollars.
    assert table.token_cost("gpt-4o-mini", 7, 0) == Decimal("0.00000105")
    assert to_nano(table.token_cost("gpt-4o-mini", 7, 0)) == 1050
    assert table.compute_cost("cpu-2vcpu", 3600.0) == Decimal("0.08925")
    assert to_nano(Decimal("0.0000000025")) == 2 and to_nano(Decimal("0.0000000035")) == 4
    assert from_nano(1050) == Decimal("0.00000105")


# ---------------------------------------------------------------- the user's table


def test_a_user_table_overrides_and_extends(tmp_path, monkeypatch):
    mine = tmp_path / "prices.yaml"
    mine.write_text(
        "version: '2026-01-01'\n"
        "models:\n"
        "  gpt-4: {input_per_1k: '0.01', output_per_1k: '0.02'}\n"
        "  my-llm: {input_per_1k: 0.1, output_per_1k: 0.3}\n"  # YAML floats, read exactly
        "  our-qwen: {machine: box}\n"
        "machines:\n  box: {per_hour: '2.00'}\n"
    )
    table = load_prices(mine)
    assert table.model("gpt-4").input_per_1k == Decimal("0.01")
    assert table.model("my-llm").output_per_1k == Decimal("0.3")
    assert table.model("gpt-4o").input_per_1k == Decimal("0.0025")  # untouched
    assert to_nano(table.compute_cost("box", 1.8)) == 1_000_000  # 1.8 s at $2/h = $0.001
    assert "prices.yaml (2026-01-01)" in table.version
    # $SLMSTACK_PRICES extends the packaged table too; an explicit table wins over it.
    env = tmp_path / "env.yaml"
    env.write_text("models:\n  gpt-4: {input_per_1k: '0.5', output_per_1k: '0.5'}\n")
    monkeypatch.setenv("SLMSTACK_PRICES", str(env))
    assert load_prices().model("gpt-4").input_per_1k == Decimal("0.5")
    assert load_prices(mine).model("gpt-4").input_per_1k == Decimal("0.01")
    given = {"models": {"gpt-4": {"input_per_1k": "0.7", "output_per_1k": "0.7"}}}
    assert load_prices(given).model("gpt-4").input_per_1k == Decimal("0.7")


def test_a_missing_price_names_the_model_and_the_fix():
    table = load_prices()
    with pytest.raises(
        ConfigError,
        match=r"model 'gpt4' has no price .*did you mean 'gpt-4'.*add it to your price table",
    ):
        table.model("gpt4")
    with pytest.raises(ConfigError, match=r"machine 'tpu' has no price .*per_hour"):
        table.compute_cost("tpu", 1.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "models: {x: {input_per_1k: '0.1'}}",
            r"models.x: give both input_per_1k and output_per_1k",
        ),
        (
            "models: {x: {input_per_1k: 1, output_per_1k: 1, machine: cpu-2vcpu}}",
            r"models.x: give both .* or machine",
        ),
        (
            "models: {x: {input_per_1k: '-1', output_per_1k: 1}}",
            r"models.x.input_per_1k: .*greater than or equal to 0",
        ),
        ("models: {x: {input_per_1k: true, output_per_1k: 1}}", r"not true/false"),
        (
            "models: {x: {input_per_1k: 1e400, output_per_1k: 1}}",
            r"models.x.input_per_1k: .*less than or equal to 1000",
        ),
        ("machines: {m: {per_hour: 1e9}}", r"machines.m.per_hour: .*less than or equal"),
        ("models: {x: {input: 1, output: 1}}", r"models.x.input: Extra inputs"),
        ("models: {x: {machine: tpu-9}}", r"priced by machine 'tpu-9', which has no price"),
        ("- a list", r"a price table is a mapping"),
    ],
)
def test_malformed_tables_say_where(tmp_path, body, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(body + "\n")
    with pytest.raises(ConfigError, match=message):
        load_prices(bad)


def test_a_missing_table_file(tmp_path):
    with pytest.raises(ConfigError, match=r"price table .*nope.yaml does not exist"):
        load_prices(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- at workflow load

WF = """\
name: desk
backends:
  big: {model: MODEL, runtime: test-remote}
steps:
  - escalate: {to: big, reason: hard}
"""


def test_an_unpriced_llm_fails_the_workflow_load_with_its_line(tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("MODEL", "acme-llm-7"))
    with pytest.raises(
        WorkflowError,
        match=r"wf.yaml:3: backends.big.model: backend 'big' .*model 'acme-llm-7' has no price .*add it to your price table",
    ):
        load_workflow(wf)
    # Priced in the workflow's own table (relative to the file): it loads.
    (tmp_path / "prices.yaml").write_text(
        "models:\n  acme-llm-7: {input_per_1k: '0.002', output_per_1k: '0.004'}\n"
    )
    wf.write_text("prices: prices.yaml\n" + WF.replace("MODEL", "acme-llm-7"))
    assert load_workflow(wf).run("hi").output.text == "ok"


def test_an_unpriced_fallback_and_an_unknown_machine_fail_too(tmp_path):
    wf = tmp_path / "wf.yaml"
    body = WF.replace("MODEL", "gpt-4o").replace(
        "runtime: test-remote}",
        "runtime: test-remote, options: {fallbacks: [{model: gpt-4o-mini}, {model: acme-2}]}}",
    )
    wf.write_text("machine: cpu-3vcpu\n" + body)
    with pytest.raises(WorkflowError, match=r"2 errors") as info:
        load_workflow(wf)
    text = str(info.value)
    assert "wf.yaml:1: machine: machine 'cpu-3vcpu' has no price" in text
    assert (
        "backends.big.options.fallbacks[1]: backend 'big' (runtime 'test-remote') calls a paid API: model 'acme-2'"
        in text
    )
    assert "gpt-4o-mini" not in text  # priced


def test_local_runtimes_need_no_model_price(tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("MODEL", "no-such-gguf").replace("test-remote", "llama_cpp"))
    # It fails later, loading the model file, not on the price.
    with pytest.raises(ModelNotFoundError, match="'no-such-gguf' is not a known alias"):
        load_workflow(wf)


def test_workflow_objects_check_prices_of_remote_backends_and_skills():
    steps = [SkillStep("intent")]
    skills = {"intent": KeywordClassifier({"refund": 0.9})}
    with pytest.raises(
        ConfigError, match=r"backend 'big' of workflow 'wf' calls a paid API: model 'acme'"
    ):
        Workflow(steps, skills=skills, name="wf", backends={"big": RemoteFake("acme")})
    with pytest.raises(ConfigError, match=r"model 'acme-fallback' has no price"):
        Workflow(
            steps,
            skills=skills,
            name="wf",
            backends={"big": RemoteFake("gpt-4o", fallbacks=[RemoteFake("acme-fallback")])},
        )

    class LLMSkill(KeywordClassifier):
        backend_ = RemoteFake("acme-3")

    with pytest.raises(
        ConfigError, match=r"skill 'intent' of workflow 'wf' calls a paid API: model 'acme-3'"
    ):
        Workflow(steps, skills={"intent": LLMSkill({"refund": 0.9})}, name="wf")
    table = load_prices({"models": {"acme-3": {"input_per_1k": "1", "output_per_1k": "1"}}})
    assert isinstance(table, PriceTable)
    Workflow(steps, skills={"intent": LLMSkill({"refund": 0.9})}, name="wf", prices=table)


def test_a_table_in_another_currency_is_refused_not_summed(tmp_path):
    eur = tmp_path / "eur.yaml"
    eur.write_text("currency: EUR\nmodels: {gpt-4: {input_per_1k: '0.03', output_per_1k: '0.06'}}\n")
    with pytest.raises(ConfigError, match="is in EUR.*does not convert currencies"):
        load_prices(eur)


def test_a_price_table_that_is_not_yaml_is_named_with_its_line(tmp_path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("models:\n  my-llm: {input_per_1k: 0.001\n")
    with pytest.raises(ConfigError, match=rf"^price table {bad}:3: not valid YAML: [^\n]*$"):
        load_prices(bad)
