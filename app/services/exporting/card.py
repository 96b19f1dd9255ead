"""The dataset card: a README.md beside the data, in the Hugging Face Hub's format.

Its YAML header names the license and the data files of each split, so that
``datasets.load_dataset("<unpacked archive>")`` finds the splits by itself; the body states the
counts, raters, agreement, the length of chosen vs rejected responses, the model versions that
sampled the completions, the aggregation rules and the filters that made the rows; a
demonstrations card, the writing figures of its rows (sources, reviews, edits, authors).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import object_session

from app.services.exporting.demos import DemoStats
from app.services.provenance import WritingFigures

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.models import Project
    from app.services.exporting.prepare import PreparedExport

# Hugging Face's YAML wants the builder's name for each file type.
_DESCRIPTIONS = {
    "comparisons": "Pairwise preference data (prompt, chosen, rejected) labeled in RLHF Studio.",
    "rankings": "Rankings of K completions per prompt (prompt, completions, each rater's ranks) "
    "labeled in RLHF Studio.",
    "demos": "Demonstrations (prompt and an ideal response) written in RLHF Studio, for SFT.",
}


def _yaml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M"


_DTYPES = {
    "str": "string",
    "int": "int64",
    "float": "float64",
    "bool": "bool",
    "timestamp": "timestamp[us, tz=UTC]",
}


def features_yaml(export: PreparedExport) -> list[str]:
    """The columns' types, so that every split (and every CSV chunk) loads with the same schema."""
    csv = export.spec.format == "csv"  # nested values are JSON text there
    lines = ["dataset_info:", "  features:"]
    for column in export.columns:
        lines.append(f"  - name: {column.name}")
        if column.kind == "messages" and not csv:
            lines += ["    list:", "    - name: role", "      dtype: string", "    - name: content",
                      "      dtype: string"]  # fmt: skip
        elif column.kind.endswith("_list_list") and not csv:
            lines += ["    list:", f"      list: {_DTYPES[column.kind.removesuffix('_list_list')]}"]
        elif column.kind.endswith("_list") and not csv:
            lines.append(f"    list: {_DTYPES[column.kind.removesuffix('_list')]}")
        elif column.kind == "timestamp" and csv:
            lines.append("    dtype: string")
        else:
            lines.append(f"    dtype: {_DTYPES.get(column.kind, 'string')}")
    return lines


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _share(value: float | None, detail: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" + (f" ({detail})" if detail else "")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def label_quality_section(session: Session, project: Project) -> list[str]:
    """The card's "Label quality" section: the figures of the project's label-quality pages."""
    from app.services.quality import project_quality

    q = project_quality(session, project)
    lines = [
        "## Label quality",
        "",
        f"Measured over all {q.human_judgments:,} human judgments of project `{project.slug}` "
        "(not only the rows above), as on its label-quality pages.",
        "",
    ]
    if q.empty:
        return [*lines, "No judgments yet.", ""]
    left_p = q.left_p_value
    vote_pairs = f"{q.agreement.pairs.pairs:,} vote pairs"
    lines += [
        "| measure | value |",
        "|---|---:|",
        f"| human raters | {len(q.raters):,} |",
        f"| pairs with two or more human votes | {q.agreement.units:,} |",
        f"| pairwise agreement (A / B / tie) | {_share(q.agreement.percent, vote_pairs)} |",
        f"| Krippendorff's alpha, ordinal (signed strength -2..2) | {_number(q.agreement.alpha_ordinal)} |",
        f"| Krippendorff's alpha, nominal (A / B / tie) | {_number(q.agreement.alpha_nominal)} |",
        f"| gold accuracy | {_share(q.gold_accuracy, f'{q.gold.pairs:,} gold judgments')} |",
        f"| left response chosen (non-tie votes) | {_share(q.left_share, f'{q.non_tie:,} votes')} |",
        f"| position bias, exact binomial test vs 50% | "
        f"{'n/a' if left_p is None else f'p = {left_p:.3g}'} |",
        f"| tie rate | {_share(q.tie_rate)} |",
        f"| both-bad rate | {_share(q.both_bad_rate)} |",
        f"| raters flagged as outliers | {len(q.outliers):,} |",
    ]  # fmt: skip
    if q.length_bias is not None:
        lines.append(
            f"| the longer completion wins | {_share(q.longer_wins_rate, f'{q.length_bias.n:,} judgments')} |"
        )
    lines.append("")
    if q.judges:
        lines += [
            "AI judges beside humans: how often the judge's choice equals a human's on pairs both "
            "labeled, and how often two humans agree on the same pairs.",
            "",
            "| judge | AI judgments | judge-human agreement | human-human agreement |",
            "|---|---:|---:|---:|",
            *[
                f"| {j.username} | {j.judgments:,} | "
                f"{_share(j.agreement, f'{j.with_humans.pairs:,} pairs')} | "
                f"{_share(j.human_agreement, f'{j.human_human.pairs:,} pairs')} |"
                for j in q.judges
            ],
            "",
        ]
    lines += [
        "Agreement is the share of agreeing pairs among all pairs of votes on the same comparison; "
        "alpha is 1 for perfect agreement and about 0 at chance level. AI judges are not counted "
        "as raters.",
        "",
    ]
    return lines


def writing_section(writing: WritingFigures) -> list[str]:
    """The demonstrations card's "Writing" section: the rows by source and review status, their
    reviews' mean score, the improvements' mean edit distance, authors and lazy-writer flags."""
    total = sum(writing.sources.values())
    lines = ["## Writing", ""]
    if not total:
        return [*lines, "No rows.", ""]
    score = "n/a" if writing.mean_score is None else f"{writing.mean_score:.2f}"
    edit = "n/a" if writing.mean_edit_distance is None else f"{writing.mean_edit_distance:.1f}"
    lines += [
        "| measure | value |",
        "|---|---:|",
        *[f"| source: {name} | {writing.sources[name]:,} |" for name in ("imported", "written", "improved")],
        *[f"| review: {name} | {writing.statuses[name]:,} |" for name in ("accepted", "pending", "rejected")],
        f"| mean review score (1-5) | {score} ({writing.scored:,} reviewed) |",
        f"| mean edit distance of improvements (characters) | {edit} ({writing.edited:,} improved) |",
        f"| authors (pseudonymous) | {len(writing.authors):,} |",
        *[f"| lazy-writer flag: {flag} | {n:,} |" for flag, n in sorted(writing.lazy_flags.items())],
        "",
        "`author` is a pseudonym (the same HMAC as the raters of the comparison exports; empty for "
        "imported rows); `review_score` is the mean of the 1-5 review scores (0.0: not reviewed); "
        "`edit_distance` is -1 for rows that are not improvements; an improved row names the completion "
        "and model version it was edited from. Lazy-writer flags: `copies_completion` (a written answer "
        "nearly identical to a model completion of the prompt), `unchanged` (an improvement left as "
        "it was), `duplicate` (nearly identical to another writer's answer).",
        "",
    ]  # fmt: skip
    return lines


def model_versions_section(session: Session, versions: Counter[int]) -> list[str]:
    """The card's "Model versions" section: the registered versions that sampled the rows'
    completions, with their kind, parent and the run that trained them."""
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from app.models import ModelVersion

    lines = ["## Model versions", ""]
    if not versions:
        return [*lines, "No row holds a completion sampled by a registered model version "
                "(imported texts name their model in `chosen_model` / `rejected_model`).", ""]  # fmt: skip
    parent = aliased(ModelVersion)
    found = session.execute(
        select(ModelVersion.id, ModelVersion.name, ModelVersion.kind, parent.name, ModelVersion.run_id)
        .outerjoin(parent, parent.id == ModelVersion.parent_id)
        .where(ModelVersion.id.in_(sorted(versions)))
        .order_by(ModelVersion.id)
    ).all()
    lines += [
        "The registered versions that sampled completions of these rows (`chosen_model_version`, "
        "`rejected_model_version`).",
        "",
        "| id | name | kind | parent | run | rows |",
        "|---:|---|---|---|---:|---:|",
        *[
            f"| {vid} | {name} | {getattr(kind, 'value', kind)} | {parent_name or '-'} | "
            f"{run_id if run_id is not None else '-'} | {versions[vid]:,} |"
            for vid, name, kind, parent_name, run_id in found
        ],
        "",
    ]
    return lines


def render_card(*, export: PreparedExport, files: dict[str, str]) -> str:
    spec, stats, project = export.spec, export.stats, export.project
    total = stats.total
    comparisons = export.kind == "comparisons"
    tags = {
        "comparisons": ["rlhf", "preference", "dpo", "reward-modeling"],
        "rankings": ["rlhf", "preference", "ranking", "reward-modeling"],
    }.get(export.kind, ["rlhf", "sft"])
    header = [
        "---",
        f"license: {_yaml_string(spec.license)}",
        f"pretty_name: {_yaml_string(f'{project.name} ({export.kind})')}",
        "task_categories:",
        "- text-generation",
        "tags:",
        *[f"- {tag}" for tag in tags],
        "size_categories:",
        f"- {_size_category(total)}",
        *features_yaml(export),
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split, path in files.items():
        header += [f"  - split: {split}", f"    path: {_yaml_string(path)}"]
    header.append("---")

    body = [
        f"# {project.name}: {export.kind}",
        "",
        _DESCRIPTIONS[export.kind],
        f"Exported from project `{project.slug}` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} "
        f"as {spec.format.upper()}, layout `{spec.resolved_layout}`.",
        "",
        "## Counts",
        "",
        "| split | rows |",
        "|---|---:|",
        *[f"| {split} | {stats.rows[split]:,} |" for split in ("train", "test")],
        f"| **total** | **{total:,}** |",
        "",
    ]
    if comparisons:
        pref = stats.preference
        chosen_median, rejected_median = stats.median_chars()
        body += [
            f"- Comparisons: {stats.comparisons:,}",
            f"- Rankings: {pref.rankings_read:,}, implying {pref.implied_pairs:,} pairs (a ranking of K "
            "completions implies K(K-1)/2; rows from rankings carry their `ranking_id`)",
            f"- Judgments behind the rows: {stats.judgments:,} (read: {pref.judgments_read:,})",
            f"- Raters: {len(stats.raters):,}",
            f"- Label sources: {', '.join(f'{k} {v:,}' for k, v in sorted(stats.sources.items())) or 'none'}",
            f"- Mean agreement: {stats.agreement_sum / total:.3f}" if total else "- Mean agreement: n/a",
            f"- Mean margin: {stats.margin_sum / total:.3f}" if total else "- Mean margin: n/a",
            "",
            "Agreement (share of votes for the winner) per row:",
            "",
            "| agreement | rows |",
            "|---|---:|",
            *[
                f"| {bucket} | {stats.agreement_buckets[bucket]:,} |"
                for bucket in ("1.0", "0.75-1.0", "0.5-0.75", "<0.5")
            ],
            "",
            "## Length of chosen vs rejected responses (characters)",
            "",
            "| | chosen | rejected |",
            "|---|---:|---:|",
            f"| mean | {stats.chosen_chars / total if total else 0:.1f} | "
            f"{stats.rejected_chars / total if total else 0:.1f} |",
            f"| median | {chosen_median:.1f} | {rejected_median:.1f} |",
            "",
            f"The chosen response is the longer one in {_percent(stats.chosen_longer, total)} of rows "
            f"(equal length: {stats.same_length:,}). Far above 50% hints at a length bias in the labels.",
            "",
            "## Aggregation rules",
            "",
            *[f"- {line}" for line in export.rules],
            "",
            "Dropped while building the rows:",
            "",
        ]
        dropped = {k: v for k, v in pref.dropped.items() if v}
        body += [f"- {reason}: {count:,}" for reason, count in sorted(dropped.items())] or ["- nothing"]
        body.append("")
        session = object_session(project)
        if session is not None:
            body += model_versions_section(session, stats.versions)
            quality = export.label_quality
            body += (
                label_quality_section(session, project)
                if quality is None
                else quality.section(session, project)
            )
    elif export.kind == "rankings":
        pref = stats.preference
        body += [
            f"- Rankings: {pref.rankings_read:,}, implying {pref.implied_pairs:,} pairs "
            "(K(K-1)/2 per ranking of K)",
            f"- Ranking judgments: {stats.judgments:,}",
            f"- Raters: {len(stats.raters):,}",
            f"- Label sources: {', '.join(f'{k} {v:,}' for k, v in sorted(stats.sources.items())) or 'none'}",
            "",
            "## Rules",
            "",
            *[f"- {line}" for line in export.rules],
            "",
        ]
    else:
        body += [f"- Mean response length: {stats.chosen_chars / total if total else 0:.1f} characters", ""]
        body += ["## Rules", "", *[f"- {line}" for line in export.rules], ""]
        if isinstance(stats, DemoStats):
            body += writing_section(stats.writing)
    body += ["## Filters", "", *([f"- {line}" for line in export.filters] or ["- none"]), ""]
    body += [
        "## Split",
        "",
        f"By prompt: a prompt is in `test` when a hash of the seed ({spec.split_seed}) and the "
        f"prompt's content falls below {spec.test_fraction:g}, so no prompt is in both splits and "
        "re-exports put each prompt in the same split.",
        "",
        "## Columns",
        "",
        ", ".join(f"`{c.name}`" for c in export.columns),
        "",
        'Metadata columns hold no nulls: an unknown model is `""`, no model version is `0`; '
        "`flags` is comma-separated; sampling settings are JSON text; raters are pseudonymous ids.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'dataset = load_dataset("path/to/this/folder")  # the splits come from this card',
        "```",
        "",
        "## License",
        "",
        f"{spec.license}",
        "",
    ]
    return "\n".join(header + [""] + body)
