"""Data-quality rules over the stages' outputs, free of Dagster.

``mdp_checks`` wraps each rule as a Dagster asset check; tests and the CLI call
them directly.
"""

from __future__ import annotations

import json
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
    truncation_ok = truncated == 0 or batch.truncation_expected
    passed = not wrong_dim and finite and worst <= NORM_TOLERANCE and rows_match and truncation_ok
    if not truncated:
        advice = ""
    elif batch.truncation_expected:
        advice = ' (expected: [chunking] strategy = "document" embeds each document\'s first window)'
    else:
        advice = " (lower [chunking] max_tokens to the model's limit)"
    return RuleOutcome(
        passed=passed,
        summary=f"{matrix.shape[0]} vectors of dim {matrix.shape[-1]} (expected {batch.dim}); "
        f"finite={finite}; max |norm-1|={worst:.2e}; {truncated} chunks longer than the encoder's "
        f"{limit} tokens{advice}",
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
    """The primary strategy may not fall more than ``margin`` below the accepted evaluation.

    ``accepted`` is the last accepted evaluation on the same query set and metric (see
    :func:`baseline_key`; the caller records an evaluation as accepted only when this rule passes,
    so a run of regressions is measured against the last good value, not the last bad one).
    """
    meta: dict[str, Any] = {
        "primary": primary,
        "metric": metric,
        "margin": margin,
        "queries_source": queries_source,
        "queries": n_queries,
    }
    if primary not in strategies or metric not in strategies[primary]:
        return RuleOutcome(True, f"no {primary} {metric} in this evaluation; nothing to guard", meta)
    current = float(strategies[primary][metric])
    meta["value"] = current
    if accepted is None or "value" not in accepted:
        return RuleOutcome(
            True, f"{primary} {metric} = {current:.4f}; first accepted value for this query set", meta
        )
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
    return RuleOutcome(
        True, f"{primary} {metric} = {current:.4f} (accepted {baseline:.4f}, margin {margin})", meta
    )


def baseline_key(queries_source: str, n_queries: int, primary: str, metric: str) -> str:
    """Evaluations are only comparable on the same query set, strategy and metric."""
    return json.dumps([queries_source, n_queries, primary, metric])


# ------------------------------------------------------------------ ingestion health (warnings)
def quarantine_rate(store: VectorStore, source: str, warn: float, error: float) -> RuleOutcome:
    """Share of the source's documents in quarantine, with the commonest reasons."""
    manifest = store.manifest(source)
    total = len(manifest)
    quarantined = [e for e in manifest.values() if e.status == "quarantined"]
    rate = len(quarantined) / total if total else 0.0
    reasons = Counter(_reason_kind(e.reason) for e in quarantined).most_common(3)
    meta: dict[str, Any] = {"documents": total, "quarantined": len(quarantined), "rate": round(rate, 4)}
    meta.update({f"reason/{kind}": n for kind, n in reasons})
    top = "; ".join(f"{kind} x{n}" for kind, n in reasons) or "none"
    summary = f"{len(quarantined)}/{total} documents quarantined ({rate:.1%}); commonest: {top}"
    if rate > error:
        return RuleOutcome(False, summary + f" — over the error threshold {error:.0%}", meta, error=True)
    if rate > warn:
        return RuleOutcome(False, summary + f" — over the warning threshold {warn:.0%}", meta, error=False)
    return RuleOutcome(True, summary, meta)


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].split("(", 1)[0].strip()[:40] or "unknown"


def _script(ch: str) -> str:
    import unicodedata

    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def text_sanity(batch: ValidatedBatch, max_bad_rate: float) -> RuleOutcome:
    """Encoding damage (U+FFFD, control characters) and the scripts the text is written in."""
    bad = 0
    letters = 0
    scripts: Counter[str] = Counter()
    suspicious_docs: list[str] = []
    for document, chunks in batch.documents:
        doc_bad = doc_len = 0
        for chunk in chunks:
            for ch in chunk.text:
                if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\n\r\t"):
                    doc_bad += 1
                elif ch.isalpha():
                    letters += 1
                    if letters % 7 == 0:  # a sample is enough to describe the mix
                        scripts[_script(ch)] += 1
            doc_len += len(chunk.text)
        bad += doc_bad
        if doc_len and doc_bad / doc_len > max_bad_rate:
            suspicious_docs.append(Path(document.path).name)
    total_chars = sum(len(c.text) for _, chunks in batch.documents for c in chunks)
    rate = bad / total_chars if total_chars else 0.0
    mix = ", ".join(f"{s.lower()} {n / max(1, sum(scripts.values())):.0%}" for s, n in scripts.most_common(4))
    meta: dict[str, Any] = {
        "characters": total_chars,
        "damaged_characters": bad,
        "damaged_rate": round(rate, 6),
        "suspicious_documents": len(suspicious_docs),
    }
    meta.update({f"script/{s.lower()}": n for s, n in scripts.most_common(4)})
    summary = f"scripts: {mix or 'no text'}; {bad} damaged characters ({rate:.3%})"
    if suspicious_docs:
        return RuleOutcome(
            False,
            summary + f"; {len(suspicious_docs)} documents look mis-decoded (first: {suspicious_docs[0]}): "
            "check their encoding",
            meta,
            error=False,
        )
    return RuleOutcome(True, summary, meta)


def chunk_length_distribution(
    batch: ValidatedBatch, min_tokens: int, max_fragment_rate: float
) -> RuleOutcome:
    counts = np.array([c.token_count for _, chunks in batch.documents for c in chunks], dtype=np.int64)
    if counts.size == 0:
        return RuleOutcome(True, "no chunks in this run", {"chunks": 0})
    p5, p50, p95 = (int(v) for v in np.percentile(counts, [5, 50, 95]))
    fragments = int((counts < min_tokens).sum())
    at_cap = int((counts >= batch.max_tokens).sum())
    rate = fragments / counts.size
    meta = {
        "chunks": int(counts.size),
        "tokens_p5": p5,
        "tokens_p50": p50,
        "tokens_p95": p95,
        "tokens_max": int(counts.max()),
        "fragments": fragments,
        "at_token_cap": at_cap,
    }
    summary = f"tokens per chunk p5/p50/p95 = {p5}/{p50}/{p95}; {fragments} fragments (< {min_tokens} tokens)"
    if rate > max_fragment_rate:
        return RuleOutcome(
            False, summary + f": {rate:.0%} fragments — check the chunking settings", meta, error=False
        )
    return RuleOutcome(True, summary, meta)


def near_duplicate_documents(batch: EmbeddedBatch, threshold: float) -> RuleOutcome:
    """Pairs of documents in this run whose mean chunk vectors are nearly identical."""
    if len(batch.documents) < 2:
        return RuleOutcome(True, "fewer than two documents in this run", {"pairs": 0})
    names = [d.external_id for d, _, _ in batch.documents]
    centroids = np.stack([v.mean(axis=0) for _, _, v in batch.documents])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    pairs: list[tuple[str, str, float]] = []
    for start in range(0, len(names), 1024):  # blockwise: memory stays small for big runs
        sims = centroids[start : start + 1024] @ centroids.T
        for i, j in zip(*np.nonzero(sims >= threshold), strict=True):
            a = start + int(i)
            if a < int(j):
                pairs.append((names[a], names[int(j)], float(sims[i, j])))
    meta: dict[str, Any] = {"documents": len(names), "pairs": len(pairs), "threshold": threshold}
    if pairs:
        first = pairs[0]
        return RuleOutcome(
            False,
            f"{len(pairs)} near-duplicate document pairs (cosine >= {threshold}); "
            f"first: {first[0]} ~ {first[1]} ({first[2]:.3f})",
            meta,
            error=False,
        )
    return RuleOutcome(True, f"no near-duplicate documents among {len(names)}", meta)
