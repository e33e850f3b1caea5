"""The evaluation report: tables shaped like the paper's, plots, and reports/metrics.json.

Everything here is read from the outputs of the evaluation steps; nothing is computed on the test data that a
step did not already compute (except ROC curves, drawn from the stored scores).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from explainrec_core import paths  # noqa: E402
from explainrec_core.config import Config  # noqa: E402
from explainrec_core.io import atomic_path  # noqa: E402

LLM = "tallrec_lora"  # the method name of our LLM in tables and metrics.json
EXPLAINREC = "explainrec"  # the attributed model (answer + explanation, joint loss)
ABLATION = "explainrec_no_attribution"  # the same without preference attribution in the prompt
LLM_METHODS = (LLM, EXPLAINREC, ABLATION)  # ranked only on the LLM's candidate lists
EXAMPLES = 6  # generated explanations shown in the report
KS = (5, 10, 20)


def _json(root: Path, rel: str) -> dict:
    path = root / rel
    return json.loads(path.read_text()) if path.is_file() else {}


def mean_std(frame: pl.DataFrame, column: str) -> dict | None:
    values = frame[column].drop_nulls().to_numpy()
    if len(values) == 0:
        return None
    return {"mean": float(values.mean()), "std": float(values.std()), "n_seeds": len(values)}


def collect_metrics(cfg: Config, root: Path) -> dict:
    """reports/metrics.json: method -> metric, with the dataset, splits, sample counts and seeds stated."""
    from explainrec_core.pipeline import step  # the metrics files this report reads are declared there

    evaluation, rec, alpaca, llm_rank, candidates, base = (
        _json(root, step(name).metrics)
        for name in ("rec_evaluation", "rec_adapter", "alpaca_adapter", "llm_ranking", "ranking_candidates",
                     "base_model"))
    baselines = pl.read_parquet(root / paths.BASELINE_RESULTS)
    llm = {f"{name}_auc": evaluation[name]["auc"] for name in ("test", "new_user", "new_item")}
    llm.update({k: llm_rank.get(k) for k in ("mrr", *(f"{m}@{k}" for m in ("hit", "ndcg") for k in KS))})
    llm.update({"train_seconds": (rec.get("train_seconds") or 0) + (alpaca.get("train_seconds") or 0),
                "inference_ms_per_sample": 1e3 / evaluation["scoring"]["samples_per_s"],
                "peak_memory_mb": max(rec.get("peak_memory_mb") or 0, alpaca.get("peak_memory_mb") or 0),
                "seeds": [cfg.rec_training.seed], "base_model": base.get("source")})
    methods = {LLM: llm, **_explain_methods(cfg, root)}
    for method in cfg.baselines.methods:
        rows = baselines.filter(pl.col("method") == method)
        entry = {}
        for name in ("test", "new_user", "new_item"):
            entry[f"{name}_auc"] = mean_std(rows, f"{name}_auc_llm_subset")
            entry[f"{name}_auc_full"] = mean_std(rows, f"{name}_auc")
        for col in rows.columns:
            if col.startswith("rank_") and not col.endswith("_n"):
                entry[col.removeprefix("rank_").replace("llm_subset_", "llm_subset.")] = mean_std(rows, col)
        entry["train_seconds"] = mean_std(rows, "fit_seconds")
        entry["inference_ms_per_sample"] = mean_std(rows, "ms_per_sample")
        entry["seeds"] = rows["seed"].to_list()
        methods[method] = entry
    return {
        "dataset": cfg.data.format,
        "split": f"global time order {cfg.split.train:.0%}/{cfg.split.valid:.0%}/rest; label = rating > "
                 f"{cfg.samples.like_threshold}",
        "sample_counts": {name: evaluation[name]["n"] for name in ("test", "new_user", "new_item")}
        | {"ranking_positives_baselines": candidates.get("positives"),
           "ranking_positives_llm": llm_rank.get("n"),
           "candidates_per_positive": 1 + cfg.ranking.n_negatives},
        "notes": "AUC columns: every method on the same seeded subsets the LLM scores; *_auc_full: baselines on the "
                 "whole set. Ranking: baselines on ranking_positives_baselines lists; llm_subset.* and the LLM on "
                 "the first ranking_positives_llm of them.",
        "seeds": {"baselines": list(cfg.baselines.seeds), "llm": [cfg.rec_training.seed],
                  "samples": cfg.rec_prompts.seed, "ranking": cfg.ranking.seed},
        "methods": methods,
    }


def _explain_methods(cfg: Config, root: Path) -> dict:
    """The attributed model and its ablation, from the explain_evaluation and explain_adapter metrics."""
    from explainrec_core.pipeline import step

    evaluation = _json(root, step("explain_evaluation").metrics)
    methods = {}
    for method, variant, adapter in ((EXPLAINREC, "attributed", "explain_adapter"),
                                     (ABLATION, "no_attribution", "explain_adapter_ablation")):
        m, train = evaluation.get(variant), _json(root, step(adapter).metrics)
        if not m:
            continue
        entry = {f"{name}_auc": m[name]["auc"] for name in ("test", "new_user", "new_item") if name in m}
        entry.update({k: m["ranking"].get(k) for k in ("mrr", *(f"{x}@{k}" for x in ("hit", "ndcg") for k in KS))})
        entry.update({k: m["explanations"].get(k) for k in ("bleu4", "rouge_l", "faithfulness",
                                                              "explanations_citing", "answer_agrees_with_p_yes")})
        entry.update({"explanations_n": m["explanations"].get("n"), "train_seconds": train.get("train_seconds"),
                      "inference_ms_per_sample": 1e3 / m["scoring_samples_per_s"],
                      "peak_memory_mb": train.get("peak_memory_mb"), "seeds": [cfg.explain_training.seed]})
        methods[method] = entry
    return methods


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"{value['mean']:.3f} ± {value['std']:.3f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _tables(metrics: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    methods = metrics["methods"]
    main = [[m, _fmt(v.get("test_auc")), _fmt(v.get("test_auc_full")),
             *(_fmt(v.get(f"{x}@{k}")) for x in ("hit", "ndcg") for k in KS),
             _fmt(v.get("ndcg@10") if m in LLM_METHODS else v.get("llm_subset.ndcg@10"))]
            for m, v in methods.items()]
    cold = [[m, _fmt(v.get("new_user_auc")), _fmt(v.get("new_item_auc")), _fmt(v.get("new_user_auc_full")),
             _fmt(v.get("new_item_auc_full"))] for m, v in methods.items()]
    eff = [[m, _fmt(v.get("train_seconds")), _fmt(v.get("inference_ms_per_sample")), _fmt(v.get("peak_memory_mb"))]
           for m, v in methods.items()]
    n = metrics["sample_counts"]
    return [
        (f"Table I: main results (AUC on the same {n['test']} test samples; Hit/NDCG@K over "
         f"{n['ranking_positives_baselines']} liked test targets x {n['candidates_per_positive']} candidates, the "
         f"LLM over {n['ranking_positives_llm']} of them; last column: every method on the LLM's lists)",
         ["method", "AUC", "AUC (full test)", *(f"{x}@{k}" for x in ("Hit", "NDCG") for k in KS),
          "NDCG@10 (LLM lists)"], main),
        (f"Table II: ablation (AUC on the {n['test']} test samples; NDCG@10 on the LLM's "
         f"{n['ranking_positives_llm']} lists; BLEU-4 (sacrebleu 13a) / ROUGE-L / faithfulness of generated "
         "explanations against the reference explanations)",
         ["variant", "AUC", "NDCG@10", "BLEU-4", "ROUGE-L", "faithfulness", "explanations citing an attribute"],
         [[label, _fmt(v.get("test_auc")), _fmt(v.get("ndcg@10")), _fmt(v.get("bleu4")), _fmt(v.get("rouge_l")),
           _fmt(v.get("faithfulness")),
           f"{v['explanations_citing']}/{v['explanations_n']}" if v.get("explanations_n") else "-"]
          for label, key in (("ExplainRec (preference attribution)", EXPLAINREC),
                             ("w/o preference attribution", ABLATION), ("w/o explanations (TALLRec)", LLM))
          for v in [methods.get(key, {})]]),
        (f"Table III: cold start (AUC; same {n['new_user']} new-user / {n['new_item']} new-item samples; full sets "
         "for the baselines)", ["method", "new users", "new items", "new users (full)", "new items (full)"], cold),
        ("Table IV: efficiency (training s; inference ms per sample; peak memory MB, LLM only)",
         ["method", "training time (s)", "inference (ms/sample)", "peak memory (MB)"], eff),
    ]


def _examples(root: Path) -> list[tuple[str, list[str], list[list[str]]]]:
    """A few generated explanations next to their references (the first test samples, not picked)."""
    path = root / paths.EXPLANATIONS
    if not path.is_file():
        return []
    rows = pl.read_parquet(path).filter(pl.col("variant") == "attributed").head(EXAMPLES)
    return [(f"Example explanations (attributed model, the first {rows.height} explained test samples)",
             ["user", "item", "label", "reference", "generated"],
             [[str(r["user_id"]), str(r["item_id"]), "Yes" if r["label"] else "No", r["response"], r["generated"]]
              for r in rows.iter_rows(named=True)])]


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _save(fig, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target


def plot_roc(root: Path, target: Path) -> Path:
    """ROC curves on the shared test subset: the LLM and each baseline's seed-0 model."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    llm = pl.read_parquet(root / paths.REC_SCORES).filter(pl.col("set") == "test")
    curves = {LLM: (llm["label"].to_numpy(), llm["p_yes"].to_numpy())}
    base = pl.read_parquet(root / paths.BASELINE_SCORES).filter(pl.col("set") == "test")
    for method in base["method"].unique(maintain_order=True):
        part = base.filter((pl.col("method") == method) & (pl.col("seed") == base["seed"].min()))
        curves[method] = (part["label"].to_numpy(), part["score"].to_numpy())
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=name, linewidth=2 if name == LLM else 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, test subset (n={len(llm)})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, target)


def plot_bars(metrics: dict, target: Path) -> Path:
    """AUC per method and set, with the standard deviation over seeds as error bars."""
    sets = ("test", "new_user", "new_item")
    methods = list(metrics["methods"])
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    width = 0.8 / len(sets)
    for i, name in enumerate(sets):
        values = [metrics["methods"][m].get(f"{name}_auc") for m in methods]
        means = [v["mean"] if isinstance(v, dict) else (v or np.nan) for v in values]
        stds = [v["std"] if isinstance(v, dict) else 0 for v in values]
        ax.bar(np.arange(len(methods)) + i * width, means, width, yerr=stds, label=name, capsize=2)
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_xticks(np.arange(len(methods)) + width, methods, rotation=20, fontsize=8)
    ax.set(ylabel="AUC", ylim=(0.3, 1.0), title="AUC per method (mean ± std over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, target)


def write_report(cfg: Config, root: Path) -> dict:
    """reports/evaluation.md and the self-contained reports/evaluation.html; returns the metrics, which the
    pipeline writes to reports/metrics.json (the step's metrics file)."""
    metrics = collect_metrics(cfg, root)
    figures = [plot_roc(root, root / paths.FIGURES / "roc_test.png"),
               plot_bars(metrics, root / paths.FIGURES / "auc_by_method.png")]
    training = root / paths.FIGURES / "rec_adapter_training.png"
    if training.is_file():
        figures.append(training)
    title = f"ExplainRec evaluation: {metrics['dataset']}"
    intro = (f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Split: {metrics['split']}. "
             f"Base model: {metrics['methods'][LLM]['base_model']}. Seeds: {metrics['seeds']}. "
             f"{metrics['notes']}")
    tables = _tables(metrics) + _examples(root)
    md = [f"# {title}", "", intro, ""]
    for caption, headers, rows in tables:
        md += [f"## {caption}", "", _md_table(headers, rows), ""]
    md += ["## Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in figures] + [""]
    with atomic_path(root / paths.EVALUATION_MD) as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    images = "".join(f'<figure><img alt="{f.stem}" src="data:image/png;base64,'
                     f'{base64.b64encode(f.read_bytes()).decode()}"><figcaption>{f.stem}</figcaption></figure>'
                     for f in figures)
    body = "".join(f"<h2>{html.escape(c)}</h2>{_html_table(h, r)}" for c, h, r in tables)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}figure{display:inline-block;margin:0 1em 1em 0}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
            f"{body}<h2>Figures</h2>{images}</body></html>")
    with atomic_path(root / paths.EVALUATION_HTML) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return metrics


def main_table(root: Path) -> str:
    """Table I as markdown, for `make demo` to print."""
    metrics = json.loads((root / paths.METRICS).read_text())
    caption, headers, rows = _tables(metrics)[0]
    return f"{caption}\n\n{_md_table(headers, rows)}"
