"""RouteLLM benchmark: the bench/RESULTS.md section, rendered from a run's result."""

from __future__ import annotations

from _routellm_data import C_GRID, PUBLISHED, RESULTS_MD, SECTION, Json


def _pct(x: float) -> str:
    return "—" if x != x else f"{100 * x:.1f}%"


def _table(exp: Json, published: list[tuple[str, float, float]]) -> str:
    head = (
        "| router | chosen on validation | APGR | CPT(50%) | CPT(80%) | APGR, all thresholds "
        "(95% CI) | CPT(50%), all | CPT(80%), all |\n|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        "| random (expected curve, exact) | — | 0.500 | 50.0% | 80.0% | 0.500 | 50.0% | 80.0% |"
    ]
    d = exp["random"]["draws"]
    rows.append(
        f"| random, {exp['random']['seeds']} seeds (mean ± sd) | — "
        f"| {d['deciles']['apgr'][0]:.3f} ± {d['deciles']['apgr'][1]:.3f} "
        f"| {_pct(d['deciles']['cpt50'][0])} ± {100 * d['deciles']['cpt50'][1]:.1f} "
        f"| {_pct(d['deciles']['cpt80'][0])} ± {100 * d['deciles']['cpt80'][1]:.1f} "
        f"| {d['all']['apgr'][0]:.3f} ± {d['all']['apgr'][1]:.3f} "
        f"| {_pct(d['all']['cpt50'][0])} ± {100 * d['all']['cpt50'][1]:.1f} "
        f"| {_pct(d['all']['cpt80'][0])} ± {100 * d['all']['cpt80'][1]:.1f} |"
    )
    for name, r in exp["routers"].items():
        st = r["settings"]
        chosen = (
            ", ".join(
                f"{k}={v}" if k in ("C", "head_c") else str(v)
                for k, v in st.items()
                if k not in ("base", "strategy")
            )
            or "—"
        )
        ci = r["all"].get("apgr_ci95", [float("nan")] * 2)
        bold = "**" if name.startswith("slmstack") else ""
        rows.append(
            f"| {bold}{name}{bold} | {chosen} | {bold}{r['deciles']['apgr']:.3f}{bold} "
            f"| {bold}{_pct(r['deciles']['cpt50'])}{bold} | {_pct(r['deciles']['cpt80'])} "
            f"| {r['all']['apgr']:.3f} ({ci[0]:.3f}–{ci[1]:.3f}) | {_pct(r['all']['cpt50'])} "
            f"| {_pct(r['all']['cpt80'])} |"
        )
    for name, cpt50, apgr in published:
        rows.append(f"| RouteLLM {name} | — | {apgr:.3f} | {cpt50:.1f}% | — | — | — | — |")
    return head + "\n".join(rows) + "\n"


def _cascade_table(exp: Json) -> str:
    out = (
        "| router | target PGR | threshold (from validation) | validation strong share "
        "| test strong share | test PGR |\n|---|---|---|---|---|---|\n"
    )
    for name, rows in exp["cascade"].items():
        for r in rows:
            out += (
                f"| {name} | {100 * r['target_pgr']:.0f}% | {r['threshold']:.4f} "
                f"| {_pct(r['val_share'])} | {_pct(r['test_share'])} "
                f"| {_pct(r['test_pgr'])} |\n"
            )
    return out


def _exp_intro(exp: Json) -> str:
    z, q = exp["sizes"], exp["test_quality"]
    sizes = " / ".join(f"{k} {z[k]}" for k in ("train", "val", "test") if k in z)
    return (
        f"Questions: {sizes}. On the test part the weak model scores {q['weak']:.3f} and "
        f"the strong one {q['strong']:.3f}."
    )


def _summary(e: Json) -> str:
    """The verdict, written from the numbers (wins and losses side by side)."""
    out = []
    for key, label in (
        ("mmlu_random", "random split"),
        ("mmlu_subjects", "subject-disjoint split"),
    ):
        x = e[key]["routers"]
        me = x["slmstack TextClassifier"]
        lo, hi = me["all"]["apgr_ci95"]
        met = lo > 0.5 and me["deciles"]["cpt50"] < 0.5
        better = [
            f"{n} ({r['deciles']['apgr']:.3f})"
            for n, r in x.items()
            if n not in ("oracle", "slmstack TextClassifier")
            and "stand-in" not in n
            and r["all"]["apgr"] > me["all"]["apgr"]
        ]
        out.append(
            f"MMLU {label}: the slmstack router's APGR is {me['deciles']['apgr']:.3f} "
            f"(all thresholds {me['all']['apgr']:.3f}, 95 % CI {lo:.3f}–{hi:.3f}) and its "
            f"CPT(50%) {_pct(me['deciles']['cpt50'])}, against 0.500 and 50 % for the random "
            f"router: {'beats random on both, target met' if met else 'target NOT met'}. "
            + (
                f"Baselines ahead of it here: {', '.join(better)}."
                if better
                else "No baseline is ahead of it here."
            )
        )
    tf = [
        e[k]["routers"]["TF-IDF + LR"]["deciles"]["apgr"] for k in ("mmlu_random", "mmlu_subjects")
    ]
    ci = [e[k]["apgr_textclassifier_minus_tfidf_ci95"] for k in ("mmlu_random", "mmlu_subjects")]
    out.append(
        f"TF-IDF + LR scores {tf[0]:.3f} on the random split and {tf[1]:.3f} on the "
        "subject-disjoint one: like the subject prior (which knows only the subject), it "
        "seems to learn mostly each subject's difficulty, which does not carry over to unseen "
        "subjects. Paired bootstrap 95 % "
        f"interval of slmstack − TF-IDF APGR: {ci[0][0]:+.3f} to {ci[0][1]:+.3f} (random), "
        f"{ci[1][0]:+.3f} to {ci[1][1]:+.3f} (subject-disjoint). The paper's best MMLU "
        "router (published APGR 0.603, CPT(50%) 35.4 %) is in the same range, under a "
        "different protocol (see the caveats)."
    )
    return "**Summary.** " + " ".join(out) + "\n"


def markdown(res: Json) -> str:
    """The RESULTS.md section (see the module docstring for definitions)."""
    e, m, t = res["experiments"], res["machine"], res["timings"]
    mr, ms = e["mmlu_random"], e["mmlu_subjects"]
    tc = mr["textclassifier"]
    parts = [
        f"{SECTION}\n",
        "Data: RouteLLM's own per-query results (`../shared/datasets/routellm`, lm-sys/RouteLLM "
        "@0b64fda): whether gpt-4-1106-preview (strong) and Mixtral-8x7B-Instruct (weak) "
        f"answered each MMLU question correctly ({res['data']['mmlu']['n']} of the 14,042 "
        "questions: RouteLLM's 5 contaminated prompts and "
        f"{res['data']['mmlu']['dropped']['duplicate_prompts']} repeated prompts dropped, so "
        "no question sits on both sides of a split), the same for "
        "GSM8K, and GPT-4 judge scores for MT-Bench. The router is an slmstack "
        '`TextClassifier(strategy="head", base="minilm")` that reads only the query and '
        'predicts "strong" (the strong model is needed) or "weak_ok"; its calibrated '
        "P(strong) is the routing score, and a query goes to the strong model when the score "
        "is at or above a threshold. Sweeping the threshold traces quality against the share "
        "of strong-model calls.\n",
        "Metrics as the paper defines them (arXiv 2406.18665, `routellm/evals/evaluate.py`): "
        "PGR = (quality(router) − quality(weak)) / (quality(strong) − quality(weak)) on the "
        "same test questions; APGR = area under PGR against the strong-call share, 0 → 100 %, "
        "trapezoidal rule; CPT(x %) = strong-call share needed for PGR x %. The columns "
        "**APGR / CPT** reproduce RouteLLM's code exactly: 11 thresholds at the deciles of the "
        "router's scores, `np.trapz` over those 11 points, CPT by `np.interp` along them. "
        "The columns **… all** use every distinct score as a threshold (tied scores enter "
        "together), the trapezoidal rule over all those points, and CPT = the smallest "
        "achievable share reaching the target; the 95 % interval is from "
        f"{res['args']['bootstrap']} bootstrap resamples of the test questions.\n",
        "Settings chosen on the validation part only, by APGR (all thresholds): for the "
        'TextClassifier the labelling (`weak_wrong`: "strong" when Mixtral is wrong; '
        '`gain`: "strong" only when GPT-4 is right and Mixtral wrong) and the head\'s C '
        f"from {list(C_GRID)}; the same grid for TF-IDF + LR; the length router's direction; "
        "the subject prior's labelling. Strategy (`head`) and encoder (MiniLM) were fixed, "
        "not swept, for CPU time: `finetune` trained 14× longer than `head` on BANKING77 "
        "(`bench/classify.py`), and MPNet, not installed here, encodes about 5× slower than "
        "MiniLM. The C sweep scores each candidate with the head's own math (sklearn "
        "`LogisticRegression(C)` on the same unit-norm MiniLM vectors from slmstack's "
        "`SentenceEncoder`, so texts are encoded once, not once per C); one TextClassifier "
        "is then fitted with the chosen setting, and its scores are the ones in bold. The "
        "stand-in's row is shown too (rank correlation with the skill's test scores: "
        f"{mr['spearman_textclassifier_vs_sweep_stand_in']:.3f}).\n",
        _summary(e),
        "### MMLU, random split (stratified 50 / 10 / 40, seed 0)\n",
        _exp_intro(mr) + "\n",
        _table(mr, PUBLISHED["mmlu"]),
        f"TextClassifier − TF-IDF APGR (all), paired bootstrap 95 % interval: "
        f"{mr['apgr_textclassifier_minus_tfidf_ci95'][0]:+.3f} to "
        f"{mr['apgr_textclassifier_minus_tfidf_ci95'][1]:+.3f}. Validation APGR of the fitted "
        f"skill: {mr['textclassifier_val_apgr']:.3f}.\n",
        "Cascade thresholds tuned on validation (the least strong-call share reaching the "
        "target PGR there), then applied unchanged to the test part:\n",
        _cascade_table(mr),
        "### MMLU, subject-disjoint split (no test subject seen in training or validation)\n",
        _exp_intro(ms)
        + f" Test subjects ({len(ms['subjects']['test'])}): "
        + ", ".join(ms["subjects"]["test"])
        + f". Validation subjects ({len(ms['subjects']['val'])}): "
        + ", ".join(ms["subjects"]["val"])
        + ".\n",
        _table(ms, PUBLISHED["mmlu"]),
        f"TextClassifier − TF-IDF APGR (all), paired bootstrap 95 % interval: "
        f"{ms['apgr_textclassifier_minus_tfidf_ci95'][0]:+.3f} to "
        f"{ms['apgr_textclassifier_minus_tfidf_ci95'][1]:+.3f}.\n",
        _cascade_table(ms),
    ]
    if "gsm8k_random" in e:
        g = e["gsm8k_random"]
        parts += [
            "### GSM8K, random split (stratified 50 / 10 / 40, seed 0)\n",
            _exp_intro(g) + "\n",
            _table(g, PUBLISHED["gsm8k"]),
            _cascade_table(g),
        ]
    if "mt_bench_transfer" in e:
        mt = e["mt_bench_transfer"]
        parts += [
            "### MT-Bench, transfer from MMLU (no MT-Bench training)\n",
            f"{mt['sizes']['test']} questions after decontamination are too few to train and "
            "test on, so the routers trained on the MMLU random split route MT-Bench first "
            "turns, as the paper's routers (trained on other data) do; quality is the mean "
            "GPT-4 judge score of both turns "
            f"(weak {mt['test_quality']['weak']:.2f}, strong {mt['test_quality']['strong']:.2f}). "
            "With this few questions the intervals are wide; and an MMLU correctness label is "
            "a different target from a judge's score of open-ended answers.\n",
            _table(mt, PUBLISHED["mt_bench"]),
        ]
    parts += [
        "### Cost of the router\n",
        f"Measured {res['when']} on {m['cpu_count']} CPU cores ({m['model_name']}; flags from "
        "`grep -o 'avx512[a-z_]*\\|amx[a-z_]*\\|avx2' /proc/cpuinfo | sort -u`, which cuts "
        "`avx512_bf16` to `avx512_bf`: "
        f"{m['cpu_flags']}), torch {m['torch']} with {m['torch_threads']} threads, load "
        f"average {m['load_before']:.1f} before / {m['load_after']:.1f} after. Encoding "
        f"every MMLU question once for the sweep: {t['encode_mmlu_s']:.0f} s "
        f"({t['encode_mmlu_texts_per_s']:.0f} texts/s). TextClassifier fit on "
        f"{mr['sizes']['train']} questions: {tc['fit_s']:.0f} s ({tc['fit_cpu_s']:.0f} CPU s); "
        f"routing {tc['predict_texts_per_s']:.0f} queries/s in batch, "
        f"p50 {tc['p50_ms_one_query']:.1f} ms for one query. Whole run {t['total_s']:.0f} s "
        f"wall, {t['cpu_s']:.0f} CPU s, peak RSS {t['peak_rss_mb']:.0f} MB.\n",
        "Command (from the repository root, holding the shared CPU lock):\n",
        f"```\n{res['command']}\n```\n",
        *(
            [f"This text was re-rendered from that run's JSON with `{res['rerendered_with']}`.\n"]
            if "rerendered_with" in res
            else []
        ),
        "### Caveats\n",
        "- Not like for like with the published rows. The paper evaluates on all MMLU "
        "questions with routers trained on other data (Chatbot Arena preferences, augmented "
        "with extra labelled data); here the router trains on half of MMLU itself and is "
        "scored on 40 % of it. Same benchmark, same model pair, same metric code, different "
        "protocol: the comparison is indicative.\n"
        "- The random split lets the router learn per-subject difficulty (see the subject "
        "prior row, which knows nothing but the subject); the subject-disjoint split is the "
        "honest figure for new kinds of query.\n"
        "- One seed, one split each; the bootstrap interval covers test-sampling noise only, "
        "not split or training noise. The decile columns move by a few hundredths between "
        "random draws (see the random rows' spread).\n"
        "- On MMLU and GSM8K the oracle's APGR exceeds 1 because it also avoids the "
        "questions where only the weak model is right.\n"
        "- The two MMLU splits test different questions (different subjects, different "
        "quality gaps), so their APGRs are not comparable with each other; compare routers "
        "within a table.\n"
        "- Settings were chosen on small validation parts: "
        f"{mr['sizes']['val']} MMLU questions (random), {len(ms['subjects']['val'])} subjects "
        f"(subject-disjoint), {e['gsm8k_random']['sizes']['val']} GSM8K problems; the "
        "cascade rows show how far a threshold tuned there lands from its target on the "
        "test part.\n"
        f"- MT-Bench is a transfer test on {e['mt_bench_transfer']['sizes']['test']} "
        "questions: its intervals are wide, and its "
        "label (a judge's score of open-ended answers) differs from the MMLU correctness the "
        "routers learned.\n"
        "- The published rows give CPT(50%) and APGR only (CPT(80%) is not in our reference "
        "list); they are quoted, not re-run.\n"
        "- The TextClassifier sees the first 128 tokens of each prompt (21 % of MMLU "
        "prompts are longer).\n",
    ]
    return "\n".join(parts)


def write_results(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md, or append it at the end."""
    text = RESULTS_MD.read_text("utf-8")
    start = text.find(SECTION)
    if start < 0:
        RESULTS_MD.write_text(text.rstrip("\n") + "\n\n" + section, "utf-8")
        return
    end = text.find("\n## ", start + len(SECTION))
    rest = text[end + 1 :] if end >= 0 else ""
    RESULTS_MD.write_text(text[:start] + section + ("\n" + rest if rest else ""), "utf-8")
