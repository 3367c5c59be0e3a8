"""Data-quality rules over the stages' outputs, free of Dagster.

``mdp_checks`` wraps each rule as a Dagster asset check; tests and the CLI call
them directly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from mdp.schemas import Chunk, Document, QuarantineRecord

if TYPE_CHECKING:
    from mdp.pipeline import DiscoveryPlan, EmbeddedBatch, ValidatedBatch
    from mdp.store import VectorStore

NORM_TOLERANCE = 1e-3


@dataclass
class RuleOutcome:
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)
    error: bool = True  # severity when it fails: ERROR blocks downstream, WARN only reports


def schema_validity(batch: ValidatedBatch) -> RuleOutcome:
    problems: list[str] = []
    for document, chunks in batch.documents:
        for model, payload in [(Document, document.model_dump())] + [
            (Chunk, c.model_dump(exclude={"text_hash"})) for c in chunks
        ]:
            try:
                model.model_validate(payload)
            except ValidationError as exc:
                problems.append(f"{payload.get('id')}: {exc.errors()[0]['msg']}")
    for _, record, _ in batch.quarantine:
        try:
            QuarantineRecord.model_validate(record.model_dump())
        except ValidationError as exc:
            problems.append(f"quarantine {record.path}: {exc.errors()[0]['msg']}")
    checked = len(batch.documents) + batch.chunk_count + len(batch.quarantine)
    return RuleOutcome(
        passed=not problems,
        summary=f"{checked} records validated, {len(problems)} invalid"
        + (f"; first: {problems[0]}" if problems else ""),
        metadata={"records_checked": checked, "invalid": len(problems)},
    )


def no_empty_or_duplicate_chunks(batch: ValidatedBatch) -> RuleOutcome:
    ids: Counter[str] = Counter()
    texts: Counter[str] = Counter()
    empty = 0
    for _, chunks in batch.documents:
        for chunk in chunks:
            ids[chunk.id] += 1
            texts[chunk.text_hash] += 1
            if not chunk.text.strip():
                empty += 1
    duplicate_ids = sum(n - 1 for n in ids.values() if n > 1)
    repeated_texts = sum(n - 1 for n in texts.values() if n > 1)
    passed = empty == 0 and duplicate_ids == 0
    return RuleOutcome(
        passed=passed,
        summary=f"{empty} empty chunks, {duplicate_ids} duplicate ids, "
        f"{repeated_texts} chunks repeat another document's text",
        metadata={"empty_chunks": empty, "duplicate_ids": duplicate_ids, "repeated_texts": repeated_texts},
    )


def documents_accounted_for(plan: DiscoveryPlan, batch: ValidatedBatch) -> RuleOutcome:
    """Every file that entered this run ends as chunks or quarantine: discovered = chunked + quarantined."""
    expected = {f.path for f in plan.to_parse} | {r.path for r in plan.refused}
    covered = {d.path for d, _ in batch.documents} | {r.path for _, r, _ in batch.quarantine}
    lost = sorted(expected - covered)
    chunked = len(batch.documents)
    quarantined = len(batch.quarantine)
    return RuleOutcome(
        passed=not lost,
        summary=(
            f"{len(expected)} files entered; documents: {chunked} chunked + {quarantined} quarantined"
            + (f"; {len(lost)} files lost, first: {Path(lost[0]).name}" if lost else "; nothing lost")
        ),
        metadata={
            "files_entered": len(expected),
            "chunked_documents": chunked,
            "quarantined": quarantined,
            "lost_files": len(lost),
            "unchanged_files": len(plan.unchanged),
        },
    )


def embeddings_are_sane(batch: EmbeddedBatch) -> RuleOutcome:
    if not batch.documents:
        return RuleOutcome(True, "nothing embedded in this run", {"vectors": 0})
    matrix = np.concatenate([vectors for _, _, vectors in batch.documents])
    wrong_dim = matrix.ndim != 2 or matrix.shape[1] != batch.dim
    finite = bool(np.isfinite(matrix).all())
    norms = np.linalg.norm(matrix, axis=1) if not wrong_dim else np.zeros(1)
    worst = float(np.abs(norms - 1.0).max()) if finite else float("inf")
    rows_match = matrix.shape[0] == batch.chunk_count
    limit = batch.encoder_max_tokens
    truncated = sum(1 for _, chunks, _ in batch.documents for c in chunks if limit and c.token_count > limit)
    passed = not wrong_dim and finite and worst <= NORM_TOLERANCE and rows_match and truncated == 0
    return RuleOutcome(
        passed=passed,
        summary=f"{matrix.shape[0]} vectors of dim {matrix.shape[-1]} (expected {batch.dim}); "
        f"finite={finite}; max |norm-1|={worst:.2e}; {truncated} chunks longer than the encoder's "
        f"{limit} tokens"
        + (" (lower [chunking] max_tokens to the model's limit)" if truncated else ""),
        metadata={
            "vectors": int(matrix.shape[0]),
            "dim": int(matrix.shape[-1]),
            "max_norm_error": worst,
            "chunks_over_encoder_limit": truncated,
        },
    )


def index_matches_manifest(store: VectorStore, source: str) -> RuleOutcome:
    manifest = store.manifest(source)
    expected = sum(e.n_chunks for e in manifest.values() if e.status == "chunked")
    frame = store.chunks_frame(columns=["id", "source"])
    rows = frame[frame["source"] == source] if len(frame) else frame
    duplicate_ids = int(rows["id"].duplicated().sum()) if len(rows) else 0
    passed = len(rows) == expected and duplicate_ids == 0
    return RuleOutcome(
        passed=passed,
        summary=f"index has {len(rows)} rows for source {source!r}; manifest expects {expected}; "
        f"{duplicate_ids} duplicate ids",
        metadata={"index_rows": len(rows), "manifest_chunks": expected, "duplicate_ids": duplicate_ids},
    )


def no_quality_regression(
    strategies: dict[str, dict[str, float]],
    queries_source: str,
    n_queries: int,
    primary: str,
    metric: str,
    margin: float,
    accepted: dict[str, Any] | None,
) -> RuleOutcome:
    """The primary strategy may not fall more than ``margin`` below the last accepted evaluation.

    ``accepted`` is the metadata of the last passing evaluation: the baseline only counts when it
    was measured on the same query set.
    """
    meta: dict[str, Any] = {"primary": primary, "metric": metric, "margin": margin,
                            "queries_source": queries_source, "queries": n_queries}
    if primary not in strategies or metric not in strategies[primary]:
        return RuleOutcome(True, f"no {primary} {metric} in this evaluation; nothing to guard", meta)
    current = float(strategies[primary][metric])
    meta["value"] = current
    same_set = (
        accepted is not None
        and accepted.get("queries_source") == queries_source
        and accepted.get("queries") == n_queries
        and accepted.get("primary") == primary
        and accepted.get("metric") == metric
    )
    if not same_set or accepted is None or "value" not in accepted:
        return RuleOutcome(True, f"{primary} {metric} = {current:.4f}; first accepted value for this query set", meta)
    baseline = float(accepted["value"])
    meta["accepted_value"] = baseline
    meta["delta"] = current - baseline
    if current < baseline - margin:
        return RuleOutcome(
            False,
            f"{primary} {metric} fell to {current:.4f} from the accepted {baseline:.4f} "
            f"(more than the {margin} margin): inspect the change before publishing this index",
            meta,
        )
    return RuleOutcome(True, f"{primary} {metric} = {current:.4f} (accepted {baseline:.4f}, margin {margin})", meta)
