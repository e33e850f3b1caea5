"""The two tuning stages and the evaluation as pipeline steps, on real ML-100K with the tiny LLM."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.data.alpaca import read_alpaca_json
from explainrec_core.errors import DataError
from explainrec_core.evaluation.ranking import llm_lists
from explainrec_core.models.adapters import CARD_JSON, WEIGHTS
from explainrec_core.pipeline import run_step
from explainrec_core.prompts import quote_item
from tests.conftest import fast_llm_params, write_params

LLM_STEPS = ("base_model", "alpaca_data", "alpaca_adapter", "rec_prompts", "rec_adapter", "rec_evaluation")
EXPLAIN_STEPS = ("preference_attributions", "explain_prompts", "explain_adapter",
                 "explain_adapter_ablation", "explain_item_token_adapter")
ITEM_TOKEN_STEPS = ("item_features", "item_token_adapter", "item_token_evaluation")
CROSS_DOMAIN_STEPS = ("cross_domain_sets", "cross_domain_prompts", "cross_domain_adapter", "cross_domain_evaluation")
EVAL_STEPS = ("ranking_candidates", "item_attributes", "item_features", "baselines", "llm_ranking", *EXPLAIN_STEPS,
              "explain_evaluation", "champion_ablations", *ITEM_TOKEN_STEPS[1:], *CROSS_DOMAIN_STEPS,
              "chatrec_evaluation", "rating_evaluation", "multitask_adapter", "multitask_evaluation", "p5_adapter",
              "p5_evaluation", "evaluation_report")
CROSS_DOMAIN_METHODS = {"tallrec_lora_cross_domain", "knowledge_base_cross_domain"}
CHAMPION_VARIANTS = {f"explainrec_item_tokens_wo_{g}" for g in ("collaborative", "text", "attributes")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ml100k_raw, tiny_llm_dir):
    root = tmp_path_factory.mktemp("llm_project")
    write_params(root, data={"raw_dir": str(ml100k_raw)}, **fast_llm_params(tiny_llm_dir),
                 ablations={"modality_groups": ["collaborative", "text", "attributes"]})  # the demo runs one
    cfg = load_config(root / "params.yaml")
    stats = {step: run_step(step, cfg, root)
             for step in ("ingest", "samples", "cold_start_sets", *LLM_STEPS, *EVAL_STEPS)}
    return root, stats


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_both_stages_and_the_evaluation(trained):
    root, stats = trained
    assert stats["base_model"]["answer_token_ids"] == {"Yes": 10539, "No": 5230}
    alpaca, rec = stats["alpaca_adapter"], stats["rec_adapter"]
    assert alpaca["steps"] == 2 and alpaca["examples"] + alpaca["skipped_longer_than_cutoff"] == 8
    assert rec["steps"] == 2 and rec["best_step"] in (1, 2) and 0 <= rec["valid_auc"] <= 1
    for adapter in (paths.ALPACA_ADAPTER, paths.REC_ADAPTER):
        assert (root / adapter / WEIGHTS).stat().st_size > 1000
        card = json.loads((root / adapter / CARD_JSON).read_text())
        assert card["base_model"].startswith("local:") and card["lora"]["r"] == 8
    # the rec adapter continues from the stage-1 adapter: different weights, same shapes
    assert _digest(root / paths.ALPACA_ADAPTER / WEIGHTS) != _digest(root / paths.REC_ADAPTER / WEIGHTS)
    assert (root / "reports/figures/rec_adapter_training.png").stat().st_size > 5000
    assert not any((root / paths.CHECKPOINTS).iterdir()), "finished runs leave no checkpoint behind"
    evaluation = stats["rec_evaluation"]
    assert {evaluation[s]["n"] for s in ("test", "new_user", "new_item")} == {16, 8}
    scores = pl.read_parquet(root / paths.REC_SCORES)
    assert scores["p_yes"].is_between(0, 1).all() and scores.height == 32


def test_every_method_sees_the_same_samples_and_candidates(trained):
    root, stats = trained
    llm = pl.read_parquet(root / paths.REC_SCORES).select("set", "sample_id").sort("set", "sample_id")
    baseline_scores = pl.read_parquet(root / paths.BASELINE_SCORES)
    # (the true cold-start sets, which no LLM scores yet, keep all their samples: test_baselines covers them)
    baseline_scores = baseline_scores.filter(pl.col("set").is_in(["test", "new_user", "new_item"]))
    for (method, seed), part in baseline_scores.group_by("method", "seed"):
        assert part.select("set", "sample_id").sort("set", "sample_id").equals(llm), (method, seed)
    candidates = pl.read_parquet(root / paths.RANKING_CANDIDATES)
    ranked = pl.read_parquet(root / paths.LLM_RANKING)
    assert ranked["sample_id"].to_list() == llm_lists(candidates, 2)["sample_id"].to_list()
    assert all(len(s) == 100 for s in ranked["scores"].to_list())
    results = pl.read_parquet(root / paths.BASELINE_RESULTS)
    assert sorted(results.select("method", "seed", "protocol").rows()) == [
        (m, s, p) for m in ("bpr", "popularity") for s in (0, 1) for p in ("auc", "ranking")]
    assert (results.filter(pl.col("protocol") == "ranking")["rank_n"] == 20).all()


def test_report_and_metrics(trained):
    root, stats = trained
    metrics = json.loads((root / paths.METRICS).read_text())
    assert set(metrics["methods"]) == {"tallrec_lora", "explainrec", "explainrec_no_attribution",
                                       "tallrec_item_tokens", "explainrec_item_tokens", "popularity", "bpr",
                                       "chat_rec", "tallrec_multitask", "p5", *CROSS_DOMAIN_METHODS,
                                       *CHAMPION_VARIANTS}
    assert metrics["sample_counts"]["test"] == 16 and metrics["seeds"]["baselines"] == [0, 1]
    assert metrics["bootstrap"]["resamples"] == 200  # evaluation.bootstrap_resamples of the test settings
    bpr = metrics["methods"]["bpr"]
    assert bpr["test_auc"]["n_seeds"] == 2 and 0 <= bpr["test_auc"]["mean"] <= 1 and bpr["ndcg@10"] is not None
    assert metrics["methods"]["tallrec_lora"]["test_auc"] == stats["rec_evaluation"]["test"]["auc"]
    # paired intervals on the real step outputs: every method on every set, NDCG@10 on the same 2 LLM lists
    for method in set(metrics["methods"]) - CROSS_DOMAIN_METHODS:
        for name in ("test", "new_user", "new_item"):
            entry = metrics["methods"][method]["sets"].get(name)
            test_only = method == "explainrec_no_attribution" or method in CHAMPION_VARIANTS
            assert entry is None if test_only and name != "test" else \
                {"auc", "auc_ci95", "best_baseline", "delta_auc_vs_best", "delta_auc_ci95"} <= set(entry)
        if method not in ("chat_rec", "tallrec_multitask"):  # they answer about one target: they rank no list
            assert metrics["methods"][method]["ranking_lists"]["llm_lists"]["n"] == 2
    assert metrics["methods"]["tallrec_lora"]["sets"]["test"]["auc"] == stats["rec_evaluation"]["test"]["auc"]
    md = (root / paths.EVALUATION_MD).read_text()
    assert "Paired comparisons" in md
    assert "Table I: main results" in md and "| bpr |" in md and "Table III: cold start" in md
    page = (root / paths.EVALUATION_HTML).read_text()
    # self-contained: ROC, AUC bars, cold-start curve, two training curves, modality weights and the two task-weight
    # plots (the attributed model's and the multi-task model's)
    assert page.count("data:image/png;base64,") == 8 and 'src="http' not in page
    assert (root / "reports/figures/cold_start_curve.png").is_file()
    assert (root / "reports/figures/roc_test.png").stat().st_size > 5000


def test_the_multitask_model_learns_both_tasks_and_is_paired_with_its_single_task_twin(trained):
    """One LoRA, two tasks (Yes/No + a verbalised star rating) on the same training samples as the TALLRec recipe;
    its ratings sit in the rating table, paired with biased MF on the LLM's test samples; Table II compares it
    with the single-task recipe."""
    root, stats = trained
    adapter = stats["multitask_adapter"]
    assert adapter["examples"]["preference"] == adapter["examples"]["rating"] == stats["rec_adapter"]["examples"]
    assert adapter["steps"] == stats["rec_adapter"]["steps"]  # same schedule: bundles of both tasks per sample
    assert adapter["task_weighting"] == "fixed" and len(adapter["task_weights"]) == adapter["steps"]
    assert (root / adapter["task_weights_plot"]).is_file()
    # selected on both tasks: every evaluation scored the validation AUC and the validation rating RMSE
    parts = adapter["valid_parts_by_evaluation"]
    assert len(parts) >= adapter["steps"] and all(0 <= p["valid_auc"] <= 1 and 0 < p["valid_rmse"] < 4 for p in parts)
    assert adapter["valid_rmse_of_training_mean"] > 0
    ratings = pl.read_parquet(root / paths.MULTITASK_RATINGS)
    assert ratings.height == 16 and ratings["prediction"].is_between(1.0, 5.0).all()
    assert ratings["prediction"].n_unique() > 1  # an expectation over the star tokens, not a constant
    metrics = json.loads((root / paths.METRICS).read_text())
    test = metrics["rating"]["test"]
    assert test["n"] == 16 and {"tallrec_multitask", "biased_mf", "global_mean"} <= set(test["methods"])
    assert "vs_biased_mf" in test["methods"]["tallrec_multitask"]
    assert metrics["rating"]["test_all"]["n"] > 1000  # the reference models on the whole test split
    assert "tallrec_multitask" in metrics["vs_full_model"]["auc"]
    md = (root / paths.EVALUATION_MD).read_text()
    assert "Rating prediction" in md and "| tallrec_multitask |" in md
    assert "TALLRec + rating task (multi-task, eq. 10) | rating task added (vs tallrec_lora)" in md


def test_attributed_model_and_its_ablation(trained):
    root, stats = trained
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    rec = pl.read_parquet(root / paths.REC_PROMPTS)
    # the same samples in the same sets as the TALLRec prompts, with answer + explanation responses
    assert prompts.select("set", "sample_id", "label").equals(rec.select("set", "sample_id", "label"))
    assert [r[:4] for r in prompts["response"]] == ["Yes." if label else "No. " for label in prompts["label"]]
    assert (prompts["prompt"].str.len_chars() > prompts["prompt_plain"].str.len_chars()).all()
    for name in ("explain_adapter", "explain_adapter_ablation"):
        assert stats[name]["steps"] == 2 and 0 <= stats[name]["valid_auc"] <= 1
        card = json.loads((root / getattr(paths, name.upper()) / CARD_JSON).read_text())
        assert card["loss_weights"]["consistency"] > 0
        # kept on valid AUC + 0.5 * the reference explanations' token probability (training/selection.py)
        kept = card["metrics"]
        assert card["selection"]["explanation_weight"] == 0.5 and len(kept["valid_selection"]) == 2
        assert kept["best_valid_criterion"] == pytest.approx(
            kept["best_valid_auc"] + 0.5 * kept["best_valid_explanation_token_prob"])
        # the task weights at every optimizer step (fixed here: the hand-set ones), plotted
        assert stats[name]["task_weighting"] == "fixed" and stats[name]["task_weights"] == [
            [s, {"classification": 1.0, "explanation": 0.5, "consistency": 0.1}] for s in (0, 1)]
        assert (root / stats[name]["task_weights_plot"]).stat().st_size > 5000
    assert card["prompt_column"] == "prompt_plain"
    assert _digest(root / paths.EXPLAIN_ADAPTER / WEIGHTS) != _digest(root / paths.EXPLAIN_ADAPTER_ABLATION / WEIGHTS)
    evaluation = stats["explain_evaluation"]
    variants = {"attributed", "no_attribution", "attributed_item_tokens"}
    assert set(evaluation) == {*variants, "variants_not_trained"} and evaluation["variants_not_trained"] == []
    assert evaluation["attributed"]["new_item"]["n"] == 8 and "new_item" not in evaluation["no_attribution"]
    for m in (evaluation[v] for v in variants):
        assert m["test"]["n"] == 16 and m["explanations"]["n"] == 4 and m["ranking"]["lists"] == 2
        assert 0 <= m["explanations"]["bleu4"] <= 1 and 0 <= m["explanations"]["rouge_l"] <= 1
    explanations = pl.read_parquet(root / paths.EXPLANATIONS)
    assert explanations.height == 12 and set(explanations["variant"]) == variants
    md = (root / paths.EVALUATION_MD).read_text()
    assert "| w/o preference attribution (text prompt) |" in md and "| w/o item tokens (multi-modal) |" in md
    assert "Example explanations" in md
    metrics = json.loads((root / paths.METRICS).read_text())["methods"]
    assert metrics["explainrec"]["test_auc"] == evaluation["attributed"]["test"]["auc"]
    assert metrics["explainrec_no_attribution"]["bleu4"] == evaluation["no_attribution"]["explanations"]["bleu4"]
    assert metrics["explainrec"]["seeds"] == [0]


def test_explain_and_recommend_commands(trained):
    from typer.testing import CliRunner

    from explainrec_core.cli import app

    root, _ = trained
    params = str(root / "params.yaml")
    user = pl.read_parquet(root / "data/processed/interactions.parquet")["user_id"][0]
    result = CliRunner().invoke(app, ["explain", "--user", str(user), "--item", "50", "--json", "--params", params])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["answer"] in ("Yes", "No") and payload["explanation"].startswith(payload["answer"])
    assert (payload["answer"] == "Yes") == (payload["p_yes"] >= 0.5) and payload["title"] == '"Star Wars (1977)"'
    result = CliRunner().invoke(app, ["recommend", "--user", str(user), "--k", "3", "--candidates", "10", "--json",
                                      "--params", params])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    rated = set(pl.read_parquet(root / "data/processed/interactions.parquet").filter(pl.col("user_id") == user)
                ["item_id"].to_list())
    assert len(top) == 3 and not rated & {r["item_id"] for r in top}
    assert [r["p_yes"] for r in top] == sorted((r["p_yes"] for r in top), reverse=True)
    result = CliRunner().invoke(app, ["explain", "--user", "999999", "--item", "50", "--params", params])
    assert result.exit_code == 2 and "unknown user" in result.output and "999999" in result.output


def test_explain_says_when_there_is_no_model_yet(tmp_path):
    from typer.testing import CliRunner

    from explainrec_core.cli import app

    write_params(tmp_path)
    params = str(tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["explain", "--user", "1", "--item", "1", "--params", params])
    assert result.exit_code == 2 and "no champion adapter" in result.output


def test_report_command_prints_the_main_table(trained, monkeypatch):
    from typer.testing import CliRunner

    from explainrec_core.cli import app

    root, _ = trained
    monkeypatch.chdir(root)
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 0, result.output
    assert "reports/evaluation.html" in result.output and "| tallrec_lora |" in result.output


def test_prompts_use_the_same_seeded_samples(trained):
    root, _ = trained
    prompts = pl.read_parquet(root / paths.REC_PROMPTS)
    cfg = load_config(root / "params.yaml")
    run_step("rec_prompts", cfg, root)
    assert pl.read_parquet(root / paths.REC_PROMPTS).equals(prompts)
    samples = pl.read_parquet(root / "data/processed/samples.parquet").select("sample_id", "split")
    joined = prompts.filter(pl.col("set").is_in(["train", "valid", "test"])).join(samples, on="sample_id")
    assert (joined["set"] == joined["split"]).all()


def test_long_prompts_lose_history_not_answers(trained, tmp_path):
    root, _ = trained
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    params = fast_llm_params(load_config(root / "params.yaml").model.base)
    params["llm_training"]["cutoff"] = 190
    write_params(tmp_path, data={"raw_dir": load_config(root / "params.yaml").data.raw_dir}, **params)
    stats = run_step("rec_prompts", load_config(tmp_path / "params.yaml"), tmp_path)
    assert stats["truncated_prompts"] > 0 and stats["history_items_dropped"] >= stats["truncated_prompts"]
    assert stats["max_prompt_tokens"] <= 190 - 3  # room left for "Yes." + EOS
    assert pl.read_parquet(tmp_path / paths.REC_PROMPTS)["response"].is_in(["Yes.", "No."]).all()


def test_empty_training_set_fails_and_keeps_the_previous_adapter(trained, tmp_path):
    root, _ = trained
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    before = _digest(tmp_path / paths.ALPACA_ADAPTER / WEIGHTS)
    params = fast_llm_params(load_config(root / "params.yaml").model.base)
    params["alpaca_training"]["cutoff"] = 20  # every seed task is longer: all skipped
    write_params(tmp_path, data={"raw_dir": load_config(root / "params.yaml").data.raw_dir}, **params)
    with pytest.raises(ValueError, match="training set is empty"):
        run_step("alpaca_adapter", load_config(tmp_path / "params.yaml"), tmp_path)
    assert _digest(tmp_path / paths.ALPACA_ADAPTER / WEIGHTS) == before


@pytest.mark.parametrize("records, fragment", [
    ([{"instruction": "Say hi.", "input": ""}], "column 'output': record 0 has a missing or empty field"),
    ([{"instruction": "", "output": "x"}], "column 'instruction'"),
    ([{"instruction": "a", "input": 3, "output": "b"}], "record 0: 'input' must be a string"),
    ([], "non-empty JSON list"),
    ({"instruction": "a"}, "non-empty JSON list"),
])
def test_alpaca_file_errors_name_the_record_and_field(tmp_path, records, fragment):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError) as info:
        read_alpaca_json(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_alpaca_file_is_read(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "Add.", "input": "1 + 1", "output": "2"},
                                {"instruction": "Say hi.", "output": "Hi."}]))
    data = read_alpaca_json(path)
    assert data.rows() == [("Add.", "1 + 1", "2", "alpaca.json:0"), ("Say hi.", "", "Hi.", "alpaca.json:1")]


@pytest.mark.e2e
def test_accelerate_launch_two_processes(trained, tmp_path):
    """`accelerate launch` data parallel: two processes (gloo on the CPU) each train on half of every batch;
    rank 0 alone writes the adapter and the metrics."""
    root, _ = trained
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    shutil.rmtree(tmp_path / paths.REC_ADAPTER)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "explainrec_core.cli", "run", "rec_adapter"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("running step rec_adapter") == 2
    metrics = json.loads((tmp_path / "reports/models/rec_adapter.json").read_text())
    # rank 0 saw about half of the tokens of the whole run
    single = json.loads((root / "reports/models/rec_adapter.json").read_text())
    assert 0.3 < metrics["tokens"] / single["tokens"] < 0.7
    assert metrics["adapter"]["tensors"] == 8 and (tmp_path / paths.REC_ADAPTER / WEIGHTS).is_file()


def test_item_token_model(trained):
    """Item features for every item; LoRA (from stage 1) and fusion trained together (multimodal.schedule joint);
    scored on the TALLRec recipe's samples and lists and compared with it, paired; refuses other features."""
    from explainrec_core.errors import ExplainRecError
    from explainrec_core.features.fusion import CONFIG
    from explainrec_core.features.fusion import WEIGHTS as FUSION_WEIGHTS
    from explainrec_core.steps.item_token_steps import load_item_token_model

    root, stats = trained
    cfg = load_config(root / "params.yaml")
    features = pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, root))
    items = pl.read_parquet(paths.resolve(paths.processed("items"), cfg, root))
    assert features.height == items.height and features["has_text"].all() and not features["has_image"].any()
    report = stats["item_features"]
    assert report["image"]["off"].startswith("no CLIP weights") and report["text"]["dim"] == 384
    assert 0.5 < report["collaborative"]["coverage"] < 1  # items nobody liked in the training period: none
    # the CF fit left out the LLM's training targets (multimodal.collaborative_holdout, on by default)
    train_pairs = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set") == "train").n_unique("sample_id")
    assert report["collaborative"]["held_out_interactions"] == train_pairs > 0
    # the ranking-protocol fit of the same CF model, on the same held-out period, is a column of its own
    ranking = report["collaborative_ranking"]
    assert (ranking["protocol"], report["collaborative"]["protocol"]) == ("ranking", "auc")
    assert ranking["held_out_interactions"] == train_pairs
    assert ranking["coverage"] == report["collaborative"]["coverage"]  # the same graph: the same items have an edge
    both = features.filter(pl.col("has_collaborative"))
    assert both["collaborative"].to_list() != both["collaborative_ranking"].to_list()
    adapter = stats["item_token_adapter"]
    assert adapter["modalities_off"] == ["image"] and adapter["steps"] == 2 and 0 <= adapter["valid_auc"] <= 1
    folder = root / paths.ITEM_TOKEN_ADAPTER
    assert (folder / FUSION_WEIGHTS).is_file() and (folder / CONFIG).is_file()
    lora = _digest(folder / WEIGHTS)  # trained with the fusion: neither stage 1's LoRA nor rec_adapter's
    assert lora not in (_digest(root / paths.ALPACA_ADAPTER / WEIGHTS), _digest(root / paths.REC_ADAPTER / WEIGHTS))
    card = json.loads((folder / CARD_JSON).read_text())
    assert card["schedule"] == "joint" and card["lora_source"] == paths.ALPACA_ADAPTER
    evaluation = stats["item_token_evaluation"]
    for group, weights in evaluation["modality_weights"].items():
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-4), group
    scores = pl.read_parquet(root / paths.ITEM_TOKEN_SCORES).select("set", "sample_id").sort("set", "sample_id")
    assert scores.equals(pl.read_parquet(root / paths.REC_SCORES).select("set", "sample_id").sort("set", "sample_id"))
    ranked = pl.read_parquet(root / paths.ITEM_TOKEN_RANKING)
    assert ranked["sample_id"].to_list() == pl.read_parquet(root / paths.LLM_RANKING)["sample_id"].to_list()
    metrics = json.loads((root / paths.METRICS).read_text())
    pairs = [c for c in metrics["comparisons"] if c["a"] == "tallrec_item_tokens" and c["b"] == "tallrec_lora"]
    assert {c["set"] for c in pairs} == {"test", "new_user", "new_item", "llm_lists"}

    # features rebuilt from other data: the saved fusion refuses them, the adapter stays as it was
    path = paths.resolve(paths.ITEM_FEATURES, cfg, root)
    original = path.read_bytes()
    try:
        features.with_columns(pl.col("text").list.eval(pl.element() * 2)).write_parquet(path)
        with pytest.raises(ExplainRecError, match="trained on item features"):
            load_item_token_model(cfg, root)
    finally:
        path.write_bytes(original)
    assert (folder / FUSION_WEIGHTS).is_file()


def test_item_token_model_two_step_schedule_keeps_the_rec_adapters_lora(trained, tmp_path):
    """multimodal.schedule two_step (CoLLM): the fusion trained on rec_adapter's LoRA, which stays frozen."""
    import dataclasses

    from explainrec_core.features.fusion import WEIGHTS as FUSION_WEIGHTS

    root, _ = trained
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("item_token_adapter"))
    cfg = load_config(copy / "params.yaml")
    cfg = dataclasses.replace(cfg, multimodal=dataclasses.replace(cfg.multimodal, schedule="two_step"))
    stats = run_step("item_token_adapter", cfg, copy)
    folder = copy / paths.ITEM_TOKEN_ADAPTER
    assert stats["steps"] == 2 and (folder / FUSION_WEIGHTS).is_file()
    assert _digest(folder / WEIGHTS) == _digest(root / paths.REC_ADAPTER / WEIGHTS)  # LoRA frozen in step 2
    card = json.loads((folder / CARD_JSON).read_text())
    assert card["schedule"] == "two_step" and card["lora_source"] == paths.REC_ADAPTER


def test_item_tokens_with_the_knowledge_modality(trained, tmp_path):
    """multimodal.modalities + knowledge: the KB's evidence about each (user, item) pair in the item tokens,
    trained, scored (ranking lists too) and given attention; without the KB the step says which asset is missing.
    The same training also takes the ranking protocol's negatives (multimodal.unseen_negatives: 1 per liked
    training target) and the ranking-protocol CF vectors' affinity (affinity_ranking)."""
    import dataclasses

    from explainrec_core.errors import ExplainRecError
    from explainrec_core.steps.item_token_steps import load_item_token_model

    root, _ = trained
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("item_token_adapter"))
    cfg = load_config(copy / "params.yaml")
    cfg = dataclasses.replace(cfg, multimodal=dataclasses.replace(
        cfg.multimodal, modalities=(*cfg.multimodal.modalities, "affinity_ranking", "knowledge"), unseen_negatives=1))
    with pytest.raises(ExplainRecError, match="preference_knowledge_base"):
        run_step("item_token_adapter", cfg, copy)
    assert not (copy / paths.ITEM_TOKEN_ADAPTER).exists()
    run_step("preference_knowledge_base", cfg, copy)
    stats = run_step("item_token_adapter", cfg, copy)
    train = pl.read_parquet(copy / paths.REC_PROMPTS).filter(pl.col("set") == "train")
    negatives = stats["unseen_negatives"]
    assert negatives["added"] + negatives["skipped_too_long"] == train.filter(pl.col("label") == 1).height > 0
    assert stats["examples"] == train.height + negatives["added"]
    assert stats["modalities"][-1] == "knowledge" and stats["steps"] == -(-stats["examples"] // 4)  # batch 4
    evaluation = run_step("item_token_evaluation", cfg, copy)
    for group, weights in evaluation["modality_weights"].items():
        assert weights["knowledge"] > 0 and weights["affinity_ranking"] > 0, group
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-4), group
    assert evaluation["test"]["n"] == json.loads((root / paths.STEP_METRICS["item_token_evaluation"])
                                                 .read_text())["test"]["n"]
    _ranking_reads_the_users_knowledge(cfg, copy)
    # the champion's attributed prompts carry no user: it is trained and loaded without the knowledge modality
    champion = run_step("explain_item_token_adapter", cfg, copy)
    assert "knowledge" not in champion["modalities"]
    _, model, _, _ = load_item_token_model(cfg, copy, paths.EXPLAIN_ITEM_TOKEN_ADAPTER)
    assert model.bank.knowledge is None and "knowledge" not in model.fusion.modalities
    _, model, _, _ = load_item_token_model(cfg, copy)
    assert model.bank.knowledge is not None and model.fusion.modalities[-1] == "knowledge"


def test_item_tokens_ranking_protocol_trains_and_selects_on_liked_vs_unrated(trained, tmp_path):
    """multimodal.training_protocol: ranking keeps only the liked targets (train and valid), each with its unrated
    negatives; validation asks the test lists' question (negatives never rated by the user at any time)."""
    import dataclasses

    from explainrec_core.errors import ConfigError
    from explainrec_core.steps.item_token_steps import unseen_negative_prompts

    root, _ = trained
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("item_token_adapter"))
    cfg = load_config(copy / "params.yaml")
    with pytest.raises(ConfigError, match="unseen_negatives must be >= 1"):
        dataclasses.replace(cfg.multimodal, training_protocol="ranking")
    cfg = dataclasses.replace(cfg, multimodal=dataclasses.replace(cfg.multimodal, training_protocol="ranking",
                                                                  unseen_negatives=1))
    stats = run_step("item_token_adapter", cfg, copy)
    prompts = pl.read_parquet(copy / paths.REC_PROMPTS)
    liked = {s: prompts.filter((pl.col("set") == s) & (pl.col("label") == 1)).height for s in ("train", "valid")}
    assert liked["train"] > 0 and liked["valid"] > 0
    assert stats["examples"] == liked["train"] + stats["unseen_negatives"]["added"]  # no disliked target
    assert stats["valid_samples"] == 2 * liked["valid"]
    card = json.loads((copy / paths.ITEM_TOKEN_ADAPTER / CARD_JSON).read_text())
    assert card["training_protocol"] == "ranking" and card["data"]["valid_samples"] == 2 * liked["valid"]
    # the validation negatives were never rated by their user, before or after the training period
    valid = prompts.filter(pl.col("set") == "valid").sort("sample_id")
    drawn = [q.items[-1] for _, q in unseen_negative_prompts(cfg, copy, valid, any_time=True)]
    rated = pl.read_parquet(paths.resolve(paths.processed("interactions"), cfg, copy))
    users = valid.filter(pl.col("label") == 1)["user_id"].to_list()
    pairs = set(zip(rated["user_id"].to_list(), rated["item_id"].to_list(), strict=True))
    assert len(drawn) == len(users) and not any((u, i) in pairs for u, i in zip(users, drawn, strict=True))
    # the pairwise loss: each liked target is one example carrying its unrated item (same validation)
    with pytest.raises(ConfigError, match="pairwise .* needs multimodal.training_protocol: ranking"):
        dataclasses.replace(cfg.multimodal, training_protocol="auc", ranking_loss="pairwise")
    cfg = dataclasses.replace(cfg, multimodal=dataclasses.replace(cfg.multimodal, ranking_loss="pairwise"))
    paired = run_step("item_token_adapter", cfg, copy)
    assert paired["ranking_loss"] == "pairwise" and paired["examples"] == liked["train"]
    assert paired["unseen_negatives"] == stats["unseen_negatives"] and paired["valid_samples"] == 2 * liked["valid"]
    assert paired["steps"] == -(-liked["train"] // 4)  # batch 4: half the pointwise run's examples


def _ranking_reads_the_users_knowledge(cfg, root):
    """Ranking (`_rank`: each user's slotted prefix once, then the candidates) puts the list's user in every slot
    it asks the fusion for, so the knowledge modality is read, and its scores equal full-prompt scoring of the same
    candidates with that user."""
    from explainrec_core.features.item_prompts import slotted_rec_prompt
    from explainrec_core.steps.item_token_steps import _rank, load_item_token_model, score_slotted

    info, model, tokenizer, slot_id = load_item_token_model(cfg, root)
    asked = []
    soft_tokens = model.soft_tokens
    model.soft_tokens = lambda requests: asked.extend(requests) or soft_tokens(requests)  # a spy
    try:
        with torch.inference_mode():
            _rank(cfg, root, model, tokenizer, info["answer_token_ids"])
    finally:
        model.soft_tokens = soft_tokens
    lists = llm_lists(pl.read_parquet(root / paths.RANKING_CANDIDATES), cfg.ranking.llm_positives)
    assert lists.height > 0 and asked
    assert {r.user for r in asked} == set(lists["user_id"].to_list())  # never None: knowledge is never masked

    items = pl.read_parquet(paths.resolve(paths.processed("items"), cfg, root))
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    row = lists.row(0, named=True)
    ranked = pl.read_parquet(root / paths.ITEM_TOKEN_RANKING).filter(pl.col("sample_id") == row["sample_id"])
    history = [(titles[i], r, i) for i, r in zip(row["history_item_ids"], row["history_ratings"], strict=True)]
    built = [slotted_rec_prompt(history, (titles[i], i), cfg.samples.like_threshold, cfg.multimodal.user_token,
                                user=row["user_id"]) for i in row["candidates"][:4]]
    with torch.inference_mode():
        full = score_slotted(model, tokenizer, slot_id, [p for p, _ in built], [q for _, q in built],
                             info["answer_token_ids"], 4)
    np.testing.assert_allclose(np.asarray(ranked["scores"][0][:4]), np.asarray(full), atol=1e-5)


def test_champion_attributed_model_with_item_tokens(trained):
    """The champion: explain_adapter's LoRA frozen (CoLLM step 2), its own fusion; scored, explained and ranked on
    the attributed model's samples and lists, and compared with it, paired, in Table II's "w/o item tokens" row."""
    from explainrec_core.features.fusion import WEIGHTS as FUSION_WEIGHTS

    root, stats = trained
    adapter = stats["explain_item_token_adapter"]
    assert adapter["steps"] == 2 and adapter["modalities_off"] == ["image"] and 0 <= adapter["valid_auc"] <= 1
    folder = root / paths.EXPLAIN_ITEM_TOKEN_ADAPTER
    assert (folder / FUSION_WEIGHTS).is_file()
    assert _digest(folder / WEIGHTS) == _digest(root / paths.EXPLAIN_ADAPTER / WEIGHTS)  # LoRA frozen
    assert _digest(folder / FUSION_WEIGHTS) != _digest(root / paths.ITEM_TOKEN_ADAPTER / FUSION_WEIGHTS)
    scores = pl.read_parquet(root / paths.EXPLAIN_SCORES)
    keys = {v: scores.filter(pl.col("variant") == v).select("set", "sample_id").sort("set", "sample_id")
            for v in ("attributed", "attributed_item_tokens")}
    assert keys["attributed"].equals(keys["attributed_item_tokens"])
    ranked = pl.read_parquet(root / paths.EXPLAIN_RANKING)
    lists = {v: ranked.filter(pl.col("variant") == v)["sample_id"].to_list() for v in ("attributed",
                                                                                        "attributed_item_tokens")}
    assert lists["attributed"] == lists["attributed_item_tokens"] and len(lists["attributed"]) == 2
    generated = pl.read_parquet(root / paths.EXPLANATIONS).filter(pl.col("variant") == "attributed_item_tokens")
    assert generated.height == 4 and all(g.startswith(("Yes", "No")) for g in generated["generated"])
    metrics = json.loads((root / paths.METRICS).read_text())
    pairs = {(c["set"], c["metric"]) for c in metrics["comparisons"]
             if c["a"] == "explainrec" and c["b"] == "explainrec_item_tokens"}
    assert pairs == {("test", "auc"), ("new_user", "auc"), ("new_item", "auc"), ("llm_lists", "ndcg@10")}
    assert metrics["vs_full_model"]["auc"]["explainrec"]["reference"] == "explainrec_item_tokens"


def test_ablation_runner_retrains_the_champion_without_one_group_of_vectors_at_a_time(trained, tmp_path):
    """champion_ablations: each Table II modality row is the champion's step 2 with one group of vectors removed and
    nothing else changed (same frozen LoRA, schedule, examples); scored on the champion's test samples and lists and
    paired with it in Table II. A finished variant is reused on a rerun; a group with no vectors is skipped."""
    import dataclasses

    from explainrec_core.config import ConfigError
    from explainrec_core.features.fusion import WEIGHTS as FUSION_WEIGHTS

    root, stats = trained
    champion_dir = root / paths.EXPLAIN_ITEM_TOKEN_ADAPTER
    champion = json.loads((champion_dir / CARD_JSON).read_text())
    removed = {"collaborative": {"collaborative", "affinity"}, "text": {"text"}, "attributes": {"attributes"}}
    assert set(stats["champion_ablations"]["variants"]) == {f"wo_{g}" for g in removed}
    for group, gone in removed.items():
        folder = root / paths.CHAMPION_ABLATIONS / group
        card = json.loads((folder / CARD_JSON).read_text())
        assert card["data"]["modalities"] == [m for m in champion["data"]["modalities"] if m not in gone], group
        assert card["training"] == champion["training"] and card["data"]["train_examples"] == \
            champion["data"]["train_examples"] and card["loss_weights"] == champion["loss_weights"]
        assert _digest(folder / WEIGHTS) == _digest(champion_dir / WEIGHTS)  # the same frozen attributed LoRA
        assert _digest(folder / FUSION_WEIGHTS) != _digest(champion_dir / FUSION_WEIGHTS)
    scores = pl.read_parquet(root / paths.CHAMPION_ABLATION_SCORES)
    champion_test = pl.read_parquet(root / paths.EXPLAIN_SCORES).filter(
        (pl.col("variant") == "attributed_item_tokens") & (pl.col("set") == "test"))
    ranked = pl.read_parquet(root / paths.CHAMPION_ABLATION_RANKING)
    champion_lists = pl.read_parquet(root / paths.EXPLAIN_RANKING).filter(
        pl.col("variant") == "attributed_item_tokens")["sample_id"].to_list()
    for group in removed:
        part = scores.filter(pl.col("variant") == f"wo_{group}")
        assert sorted(part["sample_id"]) == sorted(champion_test["sample_id"]) and set(part["set"]) == {"test"}
        assert ranked.filter(pl.col("variant") == f"wo_{group}")["sample_id"].to_list() == champion_lists
    metrics = json.loads((root / paths.METRICS).read_text())
    for method in CHAMPION_VARIANTS:  # Table II: paired with the champion on its test samples and lists
        assert metrics["vs_full_model"]["auc"][method]["reference"] == "explainrec_item_tokens"
        assert metrics["vs_full_model"]["ndcg@10"][method]["reference"] == "explainrec_item_tokens"
    md = (root / paths.EVALUATION_MD).read_text()
    table_i = md.split("Table I: main results")[1].split("Table II")[0]
    assert "w/o collaborative vectors (item tokens)" in md and "explainrec_item_tokens_wo_text" not in table_i

    # a rerun with the same settings and inputs reuses the finished variants (nothing retrained)
    copy = tmp_path / "project"
    shutil.copytree(root, copy)
    weights = copy / paths.CHAMPION_ABLATIONS / "text" / FUSION_WEIGHTS
    before = weights.stat().st_mtime_ns
    cfg = load_config(copy / "params.yaml")
    again = run_step("champion_ablations", cfg, copy)
    assert weights.stat().st_mtime_ns == before and again["variants"] == stats["champion_ablations"]["variants"]
    # a group whose vectors are off in this run (no CLIP weights: no image vectors) is skipped, and the folders of
    # groups no longer configured are removed
    only_image = dataclasses.replace(cfg, ablations=dataclasses.replace(cfg.ablations, modality_groups=("image",)))
    skipped = run_step("champion_ablations", only_image, copy)
    assert skipped["variants"] == {} and "image" in skipped["skipped"]["image"]
    assert not any((copy / paths.CHAMPION_ABLATIONS).iterdir())
    assert pl.read_parquet(copy / paths.CHAMPION_ABLATION_SCORES).height == 0
    with pytest.raises(ConfigError, match="unknown \\['sound'\\]"):
        dataclasses.replace(cfg.ablations, modality_groups=("sound",))


def test_explain_evaluation_resumes_after_the_variants_it_finished(trained, tmp_path, monkeypatch):
    """explain_evaluation (~1 hour at paper size) keeps each finished variant: after an interruption a rerun
    evaluates only the rest and writes the same outputs as an uninterrupted run; a rerun with nothing changed
    redoes nothing, one with a changed setting redoes them all."""
    import dataclasses

    from explainrec_core.steps import explain_evaluation_steps as step

    class Interrupted(Exception):
        pass

    def untimed(metrics: dict) -> dict:  # the metrics without the scoring speed (a timing, different every run)
        return json.loads(json.dumps({name: {k: v for k, v in m.items() if k != "scoring_samples_per_s"}
                                      if isinstance(m, dict) else m for name, m in metrics.items()}))

    root, stats = trained
    copy = tmp_path / "project"
    shutil.copytree(root, copy)
    parts = copy / paths.EVALUATION_PARTS / "explain_evaluation"
    assert sorted(p.name for p in parts.iterdir()) == ["attributed", "attributed_item_tokens", "no_attribution"]
    shutil.rmtree(parts)  # as if the step had never run
    cfg = load_config(copy / "params.yaml")
    evaluated, real = [], step._evaluate

    def interrupted(variant, *args):
        if evaluated:  # the second variant: the process dies here
            raise Interrupted
        evaluated.append(variant.name)
        return real(variant, *args)

    monkeypatch.setattr(step, "_evaluate", interrupted)
    with pytest.raises(Interrupted):
        run_step("explain_evaluation", cfg, copy)
    assert [p.name for p in parts.iterdir()] == ["attributed"]

    def counting(variant, *args):
        evaluated.append(variant.name)
        return real(variant, *args)

    monkeypatch.setattr(step, "_evaluate", counting)
    again = run_step("explain_evaluation", cfg, copy)
    assert evaluated == ["attributed", "no_attribution", "attributed_item_tokens"]  # the first one once only
    assert untimed(again) == untimed(stats["explain_evaluation"])
    for table in (paths.EXPLAIN_SCORES, paths.EXPLANATIONS, paths.EXPLAIN_RANKING):
        assert pl.read_parquet(copy / table).equals(pl.read_parquet(root / table)), table

    # a finished part is reused only under the same settings and inputs
    evaluated.clear()
    assert untimed(run_step("explain_evaluation", cfg, copy)) == untimed(again) and evaluated == []
    changed = dataclasses.replace(cfg, attribution=dataclasses.replace(cfg.attribution, max_new_tokens=4))
    run_step("explain_evaluation", changed, copy)
    assert evaluated == ["attributed", "no_attribution", "attributed_item_tokens"]


def test_cross_domain_column(trained):
    """Zero-shot cross-domain: the LLM trained and selected on source-genre prompts only, every method scored on the
    held-out genres, paired on the LLM's samples in Table III."""
    root, stats = trained
    prompts = pl.read_parquet(root / paths.CROSS_DOMAIN_PROMPTS)
    sizes = {name: int((prompts["set"] == name).sum()) for name in ("source_train", "source_valid", "target_eval")}
    assert sizes == {"source_train": 8, "source_valid": 8, "target_eval": 16}
    sets = pl.read_parquet(root / "data/processed/cross_domain_sets.parquet")
    target_items = set(sets.filter(pl.col("set") == "target_eval")["item_id"].to_list())
    items = pl.read_parquet(root / "data/processed/items.parquet").filter(pl.col("item_id").is_in(target_items))
    held_out = [quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)]
    assert any(t in p for t in held_out for p in prompts.filter(pl.col("set") == "target_eval")["prompt"])
    for prompt in prompts.filter(pl.col("set") != "target_eval")["prompt"]:  # no held-out title in training
        assert not any(t in prompt for t in held_out)
    card = json.loads((root / paths.CROSS_DOMAIN_ADAPTER / CARD_JSON).read_text())
    assert card["data"]["sets"] == ["source_train", "source_valid"] and stats["cross_domain_adapter"]["steps"] == 2

    evaluation = stats["cross_domain_evaluation"]
    assert evaluation["n"] == int((sets["set"] == "target_eval").sum()) and evaluation["n_llm"] == 16
    scores = pl.read_parquet(root / paths.CROSS_DOMAIN_SCORES)
    bpr = scores.filter(pl.col("method") == "bpr")
    assert bpr.height == 2 * evaluation["n"] and bpr["score"].is_finite().all()  # two seeds, whole set
    assert evaluation["baselines"]["bpr"]["n_seeds"] == 2

    metrics = json.loads((root / paths.METRICS).read_text())
    llm = metrics["methods"]["tallrec_lora_cross_domain"]
    assert llm["sets"]["cross_domain"]["n"] == 16 and llm["cross_domain_auc_full"] == evaluation[
        "tallrec_lora_cross_domain"]["auc"]
    assert metrics["methods"]["bpr"]["sets"]["cross_domain"]["n"] == 16  # paired on the LLM's samples
    assert metrics["methods"]["bpr"]["cross_domain_auc_full"] == evaluation["baselines"]["bpr"]  # whole set
    assert metrics["sample_counts"]["cross_domain_full"] == evaluation["n"]
    md = (root / paths.EVALUATION_MD).read_text()
    table = md.split("## Table III: cold start")[1].split("##")[0]
    assert "cross-domain [95% CI]" in table and "| tallrec_lora_cross_domain |" in table
    assert "| tallrec_lora_cross_domain |" not in md.split("## Table I: main results")[1].split("##")[0]
    # Table IV costs it like the other LLMs: its training run and its scoring of the held-out samples
    assert llm["train_seconds"] == stats["cross_domain_adapter"]["train_seconds"] > 0
    assert llm["inference_ms_per_sample"] == pytest.approx(
        1e3 / evaluation["tallrec_lora_cross_domain"]["scoring"]["samples_per_s"])
    assert "| tallrec_lora_cross_domain |" in md.split("## Table IV")[1].split("##")[0]
    # a baseline's cost is the fit of its AUC setting; the ranking setting's fit is reported apart
    results = pl.read_parquet(root / paths.BASELINE_RESULTS).filter(pl.col("method") == "bpr")
    auc_fit = results.filter(pl.col("protocol") == "auc")["fit_seconds"]
    assert metrics["methods"]["bpr"]["train_seconds"]["mean"] == pytest.approx(auc_fit.mean())
    assert "train_seconds_ranking" in metrics["methods"]["bpr"]


def test_p5_trains_its_families_and_scores_the_llms_samples_and_lists(trained):
    """P5: one example per family and training sample (next_item for liked targets only), the same schedule and
    stage-1 start as the TALLRec recipe; scored on the same samples and candidate lists, reported in Table I."""
    root, stats = trained
    train = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set") == "train")
    adapter = stats["p5_adapter"]
    liked = int(train["label"].sum())
    assert adapter["examples_per_family"] == {"sequential": train.height, "direct": train.height,
                                              "rating": train.height, "next_item": liked}
    assert adapter["examples"] + adapter["skipped_longer_than_cutoff"] == 3 * train.height + liked
    assert adapter["steps"] == -(-adapter["examples"] // 4)  # batch 4, one epoch: the llm_training schedule
    assert _digest(root / paths.P5_ADAPTER / WEIGHTS) != _digest(root / paths.REC_ADAPTER / WEIGHTS)
    p5 = pl.read_parquet(root / paths.P5_SCORES)
    llm = pl.read_parquet(root / paths.REC_SCORES)
    assert p5.select("set", "sample_id").sort("set", "sample_id").equals(
        llm.select("set", "sample_id").sort("set", "sample_id"))
    assert p5["p_yes"].is_between(0, 1).all()
    ranked = pl.read_parquet(root / paths.P5_RANKING)
    assert ranked["sample_id"].sort().equals(pl.read_parquet(root / paths.LLM_RANKING)["sample_id"].sort())
    assert stats["p5_evaluation"]["ranking"]["n"] == ranked.height == 2
    metrics = json.loads((root / paths.METRICS).read_text())["methods"]["p5"]
    assert metrics["sets"]["test"]["n"] == 16 and metrics["ranking_lists"]["llm_lists"]["n"] == 2
    assert metrics["train_seconds"] > 0
    md = (root / paths.EVALUATION_MD).read_text()
    assert "| p5 |" in md.split("Table I: main results")[1].split("Table II: ablation")[0]


def test_chat_rec_scores_the_llms_samples_zero_shot(trained):
    root, stats = trained
    chatrec = pl.read_parquet(root / paths.CHATREC_SCORES).select("set", "sample_id").sort("set", "sample_id")
    llm = pl.read_parquet(root / paths.REC_SCORES).select("set", "sample_id").sort("set", "sample_id")
    assert chatrec.equals(llm)  # the same seeded samples as every method: paired in the report
    m = stats["chatrec_evaluation"]
    assert m["candidates"] == 5 and 0 <= m["target_among_candidates"] <= 1 and m["test"]["n"] == 16
    assert m["answer_token_ids"] == stats["base_model"]["answer_token_ids"]  # "Yes"/"No" after a newline here too
    metrics = json.loads((root / paths.METRICS).read_text())
    assert metrics["methods"]["chat_rec"]["sets"]["test"]["n"] == 16
    assert metrics["methods"]["chat_rec"]["train_seconds"] == 0.0
