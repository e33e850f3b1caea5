"""The evaluation report on hand-made score files: paired intervals in metrics.json, verdicts in the text."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.evaluation.report import ABLATION, EXPLAINREC, LLM, write_report
from explainrec_core.io import write_parquet
from explainrec_core.steps.eval_steps import run_evaluation_report
from tests.conftest import write_params

SEEDS = (0, 1, 2)
N = {"test": 400, "new_user": 200, "new_item": 200}
LISTS = 300


def _ids(name: str) -> np.ndarray:
    return {"test": 0, "new_user": 10_000, "new_item": 20_000}[name] + np.arange(N[name])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A project whose LLM separates the labels well, whose ablation is the full model plus a little noise, and
    whose baselines are noisy: popularity the better of the two. Rows of some files are shuffled."""
    root = tmp_path_factory.mktemp("report")
    write_params(root, baselines={"methods": ["popularity", "bpr"], "seeds": list(SEEDS)})
    cfg = load_config(root / "params.yaml")
    rng = np.random.default_rng(0)
    rec, explain, base, results = [], [], [], []
    for name in N:
        ids, labels = _ids(name), rng.integers(0, 2, N[name])
        rec.append(pl.DataFrame({"set": name, "sample_id": ids, "label": labels,
                                 "p_yes": 1 / (1 + np.exp(-(3 * labels + rng.normal(size=N[name]))))}))
        full = 1.5 * labels + rng.normal(size=N[name])
        # the champion (item tokens) adds label signal: the attributed model without them must come out worse
        for variant, scores in (("attributed", full), ("no_attribution", full + rng.normal(scale=0.02, size=N[name])),
                                ("attributed_item_tokens", full + 2.0 * labels)):
            explain.append(pl.DataFrame({"variant": variant, "set": name, "sample_id": ids, "label": labels,
                                         "p_yes": 1 / (1 + np.exp(-scores))}))
        for method, signal in (("popularity", 0.5), ("bpr", 0.2)):
            for seed in SEEDS:
                base.append(pl.DataFrame({"method": method, "seed": seed, "set": name, "sample_id": ids,
                                          "label": labels, "score": signal * labels + rng.normal(size=N[name])}))
    base_scores = pl.concat(base)
    for (method, seed), part in base_scores.group_by("method", "seed"):
        row = {"method": method, "seed": seed, "fit_seconds": 1.0, "ms_per_sample": 0.1}
        for name in N:
            p = part.filter(pl.col("set") == name)
            row[f"{name}_auc"] = row[f"{name}_auc_llm_subset"] = roc_auc_score(p["label"], p["score"])
        row |= {"rank_ndcg@10": 0.3, "rank_n": LISTS}
        results.append(row)
    list_ids = np.arange(LISTS) * 7
    grid = rng.normal(size=(LISTS, 100))
    grid[:, 0] += 1.5  # the positive scores higher
    ranks = pl.concat([pl.DataFrame({"method": m, "seed": s, "sample_id": list_ids,
                                     "rank": rng.integers(1, 30 if m == "popularity" else 60, LISTS)})
                       for m in ("popularity", "bpr") for s in SEEDS])
    write_parquet(pl.concat(rec).sample(fraction=1, shuffle=True, seed=1), root / paths.REC_SCORES)
    write_parquet(pl.concat(explain), root / paths.EXPLAIN_SCORES)
    write_parquet(base_scores.sample(fraction=1, shuffle=True, seed=2), root / paths.BASELINE_SCORES)
    write_parquet(pl.DataFrame(results), root / paths.BASELINE_RESULTS)
    write_parquet(ranks, root / paths.BASELINE_RANKING)
    write_parquet(pl.DataFrame({"sample_id": list_ids[::-1], "scores": grid[::-1].tolist()}),
                  root / paths.LLM_RANKING)
    write_parquet(pl.DataFrame({"variant": ["attributed"] * LISTS + ["no_attribution"] * LISTS
                                + ["attributed_item_tokens"] * LISTS,
                                "list": [*range(LISTS)] * 3, "sample_id": [*list_ids] * 3,
                                "scores": [*grid.tolist(), *(grid + 1e-3 * rng.normal(size=grid.shape)).tolist(),
                                           *grid.tolist()]}),
                  root / paths.EXPLAIN_RANKING)
    explained = {"n": 10, "bleu4": 0.1, "rouge_l": 0.2, "faithfulness": 0.9, "explanations_citing": 8,
                 "stance_contradicts_answer": 0.25}
    upstream = {
        "rec_evaluation": {**{name: {"auc": 0.9, "n": N[name]} for name in N}, "scoring": {"samples_per_s": 4.0}},
        "llm_ranking": {"n": LISTS, "ndcg@10": 0.5}, "ranking_candidates": {"positives": LISTS},
        "base_model": {"source": "tiny"},
        "explain_evaluation": {v: {**{name: {"auc": 0.8, "n": N[name]} for name in N},
                                   "ranking": {"ndcg@10": 0.5, "lists": LISTS},
                                   "explanations": explained, "scoring_samples_per_s": 2.0}
                               for v in ("attributed", "no_attribution", "attributed_item_tokens")},
    }
    (root / "upstream.json").write_text(json.dumps(upstream))  # for tests that rerun the report on a copy
    return root, write_report(cfg, root, upstream), base_scores


def test_metrics_hold_auc_intervals_and_paired_deltas_vs_the_best_baseline(report):
    root, metrics, base_scores = report
    llm = pl.read_parquet(root / paths.REC_SCORES)
    for name in N:
        entry = metrics["methods"][LLM]["sets"][name]
        part = llm.filter(pl.col("set") == name)
        assert entry["auc"] == pytest.approx(roc_auc_score(part["label"], part["p_yes"]))
        assert entry["auc_ci95"][0] < entry["auc"] < entry["auc_ci95"][1] and entry["n"] == N[name]
        assert entry["best_baseline"] == "popularity"
        popularity = metrics["methods"]["popularity"]["sets"][name]
        assert entry["delta_auc_vs_best"] == pytest.approx(entry["auc"] - popularity["auc"])
        assert entry["delta_auc_ci95"][0] > 0 and entry["verdict_vs_best"] == "better"
        assert popularity["delta_auc_vs_best"] is None  # the best baseline itself
        # a seed-averaged baseline: the mean over seeds of per-seed AUCs, each seed listed
        bpr = metrics["methods"]["bpr"]["sets"][name]
        per_seed = [roc_auc_score(p["label"], p["score"]) for s in SEEDS for p in [base_scores.filter(
            (pl.col("method") == "bpr") & (pl.col("seed") == s) & (pl.col("set") == name))]]
        assert bpr["auc"] == pytest.approx(np.mean(per_seed))
        assert list(bpr["auc_per_seed"].values()) == pytest.approx(per_seed)
        assert len(bpr["delta_auc_per_seed"]) == 3
    # the existing keys stay, and standard deviations over seeds use ddof = 1
    test_auc = metrics["methods"]["bpr"]["test_auc"]
    assert test_auc["std"] == pytest.approx(np.std(list(metrics["methods"]["bpr"]["sets"]["test"]
                                                        ["auc_per_seed"].values()), ddof=1))
    assert metrics["methods"][LLM]["test_auc"] == 0.9 and metrics["bootstrap"]["resamples"] == 2000


def test_ndcg_differences_are_paired_over_the_same_lists(report):
    _, metrics, _ = report
    ranked = metrics["methods"][LLM]["ranking_lists"]["llm_lists"]
    assert ranked["n"] == LISTS and ranked["best_baseline"] == "popularity"
    assert ranked["delta_ndcg@10_ci95"][0] < ranked["delta_ndcg@10_vs_best"] < ranked["delta_ndcg@10_ci95"][1]
    # the LLM file lists its rows in reverse order: pairing by sample_id gives the ablation (same grid + noise) no
    # detectable difference; pairing by position would not
    vs_full = metrics["vs_full_model"]["ndcg@10"][LLM]
    assert vs_full["delta"] == pytest.approx(0, abs=0.02) and vs_full["verdict"] == "no detectable difference"
    assert metrics["methods"]["bpr"]["ranking_lists"]["all_lists"]["verdict_vs_best"] == "worse"


def test_text_says_better_only_when_the_interval_excludes_zero(report):
    root, metrics, _ = report
    md = (root / paths.EVALUATION_MD).read_text()
    ablation = [c for c in metrics["comparisons"] if c["a"] == ABLATION and c["b"] == EXPLAINREC]
    assert {c["metric"] for c in ablation} == {"auc", "ndcg@10"}
    for c in ablation:
        assert c["ci95"][0] <= 0 <= c["ci95"][1] and c["verdict"] == "no detectable difference"
    lines = [line for line in md.splitlines() if line.startswith(f"- {ABLATION} vs {EXPLAINREC}")]
    assert lines and all(line.endswith("no detectable difference") for line in lines)
    assert f"- {LLM} vs popularity, AUC on test (n = 400): +" in md and f"{LLM} is better" in md
    assert "bpr is worse" in md
    # Table II shows the paired deltas vs the full model; Table III has intervals on the cold-start sets
    row = next(line for line in md.splitlines() if line.startswith("| w/o preference attribution (text prompt) |"))
    assert row.count("[") >= 4 and "| 0.250 |" in row and f"(vs {EXPLAINREC})" in row
    # one setting at a time: the attributed model without item tokens is compared with the champion, not the
    # ablation (which lacks both)
    row = next(line for line in md.splitlines() if line.startswith("| w/o item tokens (multi-modal) |"))
    assert "(vs explainrec_item_tokens)" in row and row.count("[") >= 2
    worse = [c for c in metrics["comparisons"] if c["a"] == EXPLAINREC and c["b"] == "explainrec_item_tokens"
             and c["metric"] == "auc"]
    assert {c["set"] for c in worse} == set(N) and all(c["verdict"] == "worse" for c in worse)
    cold = next(line for line in md.splitlines() if line.startswith(f"| {LLM} |") and "new" not in line
                and line.count("[") >= 4)
    assert cold
    assert metrics["methods"][EXPLAINREC]["sets"]["new_item"]["auc_ci95"][0] is not None
    page = (root / paths.EVALUATION_HTML).read_text()
    assert page.count("data:image/png;base64,") == 2 and "no detectable difference" in page


def test_report_reads_the_metrics_files_the_pipeline_declares():
    from explainrec_core.pipeline import step

    report_step = step("evaluation_report")
    for name, rel in paths.STEP_METRICS.items():
        assert step(name).metrics == rel and name in report_step.reads_metrics
    assert "baseline_ranking" in step("baselines").outs and "baseline_ranking" in report_step.deps


def test_a_run_that_skipped_the_tallrec_steps_reports_the_methods_it_has(report, tmp_path):
    """`explainrec run all --skip rec_evaluation --skip llm_ranking`: no TALLRec row, the other rows and their
    paired comparisons as before, and the report says which steps did not run."""
    root, metrics, _ = report
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    (copy / paths.REC_SCORES).unlink()
    (copy / paths.LLM_RANKING).unlink()
    upstream = json.loads((copy / "upstream.json").read_text())
    del upstream["rec_evaluation"], upstream["llm_ranking"]
    partial = write_report(load_config(copy / "params.yaml"), copy, upstream)
    assert LLM not in partial["methods"] and partial["steps_not_run"][:2] == ["rec_evaluation", "llm_ranking"]
    assert partial["sample_counts"]["test"] == N["test"] and partial["sample_counts"]["ranking_positives_llm"] == LISTS
    for method in (EXPLAINREC, "explainrec_item_tokens", "popularity"):
        assert partial["methods"][method]["sets"]["test"] == metrics["methods"][method]["sets"]["test"]
    md = (copy / paths.EVALUATION_MD).read_text()
    assert "Not run this time (no rows): rec_evaluation, llm_ranking" in md and f"| {LLM} |" not in md
    # the item-token model alone ranked: the lists are counted from it (the report said "None" lists)
    (copy / paths.EXPLAIN_SCORES).unlink()
    (copy / paths.EXPLAIN_RANKING).unlink()
    del upstream["explain_evaluation"]
    upstream["item_token_evaluation"] = {"ranking": {"n": LISTS}, "scoring": {"samples_per_s": 2.0}}  # no files
    alone = write_report(load_config(copy / "params.yaml"), copy, upstream)
    assert alone["sample_counts"]["ranking_positives_llm"] == LISTS
    assert "None" not in (copy / paths.EVALUATION_MD).read_text().split("## Table II")[0]


def test_files_of_a_step_the_run_skipped_are_not_mixed_in(report, tmp_path):
    """`explainrec run all --skip rec_evaluation --skip llm_ranking`: the TALLRec scores and lists on disk are from an
    earlier run (other models), so the report of this run has no TALLRec row although the files are still there;
    once the run is finished the
    summary no longer applies (a later Dagster/DVC report of the same folder reads what is there)."""
    root, metrics, _ = report
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    upstream = json.loads((copy / "upstream.json").read_text())
    for name, rel in paths.STEP_METRICS.items():
        if name in upstream:
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            (copy / rel).write_text(json.dumps(upstream[name]))
    summary = {"steps": [{"step": "rec_evaluation", "skipped": True}, {"step": "llm_ranking", "skipped": True},
                         {"step": "baselines", "reused": True}]}
    (copy / paths.RUN_SUMMARY).write_text(json.dumps(summary))
    cfg = load_config(copy / "params.yaml")
    partial = run_evaluation_report(cfg, copy)
    assert (copy / paths.REC_SCORES).is_file() and LLM not in partial["methods"]
    assert partial["steps_not_run"][:2] == ["rec_evaluation", "llm_ranking"] and EXPLAINREC in partial["methods"]
    assert not any(LLM in (c["a"], c["b"]) for c in partial["comparisons"])
    assert f"| {LLM} |" not in (copy / paths.EVALUATION_MD).read_text()
    (copy / paths.RUN_SUMMARY).write_text(json.dumps({**summary, "finished": "2026-12-01T00:00:00+00:00"}))
    assert LLM in run_evaluation_report(cfg, copy)["methods"]


def test_the_knowledge_base_is_paired_on_the_same_samples_and_the_true_cold_start_table_drawn(report, tmp_path):
    """The KB scores whole sets: the report keeps the samples the other methods scored, pairs it with the best
    baseline (it is ExplainRec's component, never a baseline itself), and draws AUC vs k."""
    root, _, _ = report
    copy = tmp_path / "kb"
    shutil.copytree(root, copy)
    rng = np.random.default_rng(5)
    frames = []
    rec = pl.read_parquet(copy / paths.REC_SCORES)
    for name in N:
        known = rec.filter(pl.col("set") == name).sort("sample_id")
        ids = np.concatenate([known["sample_id"].to_numpy(), 10_000_000 + np.arange(50)])  # + 50 nobody scored
        labels = np.concatenate([known["label"].to_numpy(), rng.integers(0, 2, 50)])
        frames.append(pl.DataFrame({"set": name, "sample_id": ids, "label": labels,
                                    "p_yes": 1 / (1 + np.exp(-(2 * labels + rng.normal(size=len(ids)))))}))
    scores = pl.concat(frames)
    write_parquet(scores, copy / paths.KNOWLEDGE_BASE_SCORES)
    results = pl.read_parquet(copy / paths.BASELINE_RESULTS)
    write_parquet(results.with_columns(new_user_k0_auc=pl.lit(0.5), new_user_k5_auc=pl.lit(0.6),
                                       new_item_unseen_auc=pl.lit(0.55)), copy / paths.BASELINE_RESULTS)
    upstream = json.loads((copy / "upstream.json").read_text())
    curve = {name: {"auc": 0.7, "n": 80} for name in ("new_user_k0", "new_user_k1", "new_user_k3", "new_user_k5",
                                                       "new_item_unseen")}
    upstream["preference_knowledge_base"] = {"weights": {"all": 1.0}, "demographic_model": {
        **{name: {"auc": 0.7, "n": N[name] + 50} for name in N}, "cold_start_curve": curve}}
    metrics = write_report(load_config(copy / "params.yaml"), copy, upstream)
    kb = metrics["methods"]["knowledge_base"]
    part = scores.filter((pl.col("set") == "test") & (pl.col("sample_id") < 10_000_000))
    assert kb["sets"]["test"]["n"] == N["test"]
    assert kb["sets"]["test"]["auc"] == pytest.approx(roc_auc_score(part["label"], part["p_yes"]))
    assert kb["sets"]["test"]["best_baseline"] == "popularity" and kb["sets"]["test"]["verdict_vs_best"] == "better"
    assert kb["new_user_k0_auc_full"] == 0.7 and metrics["methods"]["bpr"]["new_user_k5_auc_full"]["mean"] == 0.6
    md = (copy / paths.EVALUATION_MD).read_text()
    assert "Table III-b: true cold start" in md and "new_user_k0: n = 80" in md
    assert "| knowledge_base | 0.700 | 0.700 | 0.700 | 0.700 | 0.700 |" in md
    assert (copy / paths.FIGURES / "cold_start_curve.png").is_file()


def test_the_true_cold_start_sets_are_paired_with_the_baselines_scores(report, tmp_path):
    """Baselines keep every score of a true cold-start set; the knowledge base and the meta-learned variants are
    paired with them there (and only there: the meta rows stay out of Table I)."""
    root, _, _ = report
    copy = tmp_path / "curve"
    shutil.copytree(root, copy)
    rng = np.random.default_rng(9)
    ids, labels = np.arange(300) + 5_000_000, rng.integers(0, 2, 300)
    base = pl.read_parquet(copy / paths.BASELINE_SCORES)
    extra = [pl.DataFrame({"method": m, "seed": seed, "protocol": "auc", "set": "new_user_k1", "sample_id": ids,
                           "label": labels, "score": rng.normal(size=300) + (0.8 if m == "bpr" else 0.0) * labels})
             for m in ("popularity", "bpr") for seed in SEEDS]
    write_parquet(pl.concat([base.with_columns(protocol=pl.lit("auc")).select(extra[0].columns), *extra],
                            how="vertical_relaxed"), copy / paths.BASELINE_SCORES)
    write_parquet(pl.DataFrame({"order": ["none"] * 300 + ["second"] * 300, "set": "new_user_k1",
                                "sample_id": np.concatenate([ids, ids]), "label": np.concatenate([labels, labels]),
                                "p_yes": np.concatenate([rng.random(300), 0.3 + 0.4 * labels])}),
                  copy / paths.META_SCORES)
    upstream = json.loads((copy / "upstream.json").read_text())
    upstream["meta_adaptation"] = {"chosen": "second", "orders": {"none": {"test_auc": {"1": 0.5}},
                                                                  "second": {"test_auc": {"1": 1.0}}}}
    metrics = write_report(load_config(copy / "params.yaml"), copy, upstream)
    maml = metrics["methods"]["meta_maml_second_order"]["sets"]["new_user_k1"]
    assert maml["auc"] == pytest.approx(1.0) and maml["best_baseline"] == "bpr" and maml["verdict_vs_best"] == "better"
    assert metrics["methods"]["meta_no_adaptation"]["sets"]["new_user_k1"]["n"] == 300
    md = (copy / paths.EVALUATION_MD).read_text()
    table_one = md.split("## Table I:")[1].split("## Table II")[0]
    assert "meta_" not in table_one and "meta_maml_second_order (kept on valid)" in md


def test_the_rating_task_gets_its_table_with_paired_differences(report, tmp_path):
    """rating_evaluation's summary (error_summary of real predictions) becomes a table and metrics.json's `rating`."""
    from explainrec_core.rating.metrics import error_summary

    root, _, _ = report
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    rng = np.random.default_rng(3)
    stars = rng.integers(1, 6, 300).astype(float)
    scores = pl.concat([pl.DataFrame({"method": m, "set": "test", "sample_id": np.arange(300), "rating": stars,
                                      "prediction": stars + rng.normal(scale=s, size=300)})
                        for m, s in (("global_mean", 1.2), ("biased_mf", 0.9))])
    upstream = json.loads((copy / "upstream.json").read_text())
    upstream["rating_evaluation"] = {"sets": error_summary(scores, resamples=200)}
    metrics = write_report(load_config(copy / "params.yaml"), copy, upstream)
    assert metrics["rating"]["test"]["n"] == 300
    md = (copy / paths.EVALUATION_MD).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| global_mean |"))
    delta = metrics["rating"]["test"]["methods"]["global_mean"]["vs_biased_mf"]["rmse"]
    assert delta["verdict"] == "higher error" and f"{delta['delta']:+.3f}" in row  # a positive difference
    assert "Rating prediction" in md
