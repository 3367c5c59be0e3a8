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
import pyarrow as pa
import pyarrow.compute as pc

from mdp.schemas import get_schema

if TYPE_CHECKING:
    from mdp.stages import ChunkedBatch, DiscoveryPlan, EmbeddedBatch, ValidatedBatch
    from mdp.store import VectorStore

NORM_TOLERANCE = 1e-3


@dataclass
class RuleOutcome:
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)
    error: bool = True  # severity when it fails: ERROR blocks downstream, WARN only reports


def schema_versions(recorded: dict[str, str]) -> RuleOutcome:
    """The records a stage handed over were written with the schema versions this code reads.

    Documents, chunks and quarantine records are validated when they are built and again by
    ``validate_stage``; what can still go wrong is a hand-over between code versions (a staged
    batch from before an upgrade, a step run by a pod with other code).
    """
    current = {name: get_schema(name).schema_version for name in recorded}
    stale = {name: (version, current[name]) for name, version in recorded.items() if version != current[name]}
    meta: dict[str, Any] = {f"schema/{name}": version for name, version in sorted(recorded.items())}
    if stale:
        first, (was, now) = next(iter(sorted(stale.items())))
        return RuleOutcome(
            False,
            f"{len(stale)} schema(s) changed since these records were written "
            f"(first: {first} {was} → {now}): re-materialize from raw_documents",
            meta,
        )
    return RuleOutcome(True, f"records written with the current schemas ({len(recorded)} checked)", meta)


def documents_accounted_for(plan: DiscoveryPlan, batch: ChunkedBatch) -> RuleOutcome:
    """Every file that entered this run ends as chunks or quarantine: discovered = chunked + quarantined."""
    expected = {f.path for f in plan.to_parse} | {r.path for r in plan.refused}
    covered = {d.document.path for d in batch.documents} | {q.record.path for q in batch.quarantine}
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


def embeddings_are_sane(batch: EmbeddedBatch, vectors: dict[str, np.ndarray]) -> RuleOutcome:
    """Every chunk has a finite, unit-norm vector of the model's dimension, and none is longer than
    the encoder's window (it would be truncated, losing text) unless the protocol truncates on purpose."""
    if not batch.documents:
        return RuleOutcome(True, "nothing embedded in this run", {"vectors": 0})
    hashes = [c.text_hash for d in batch.documents for c in d.chunks]
    missing = sum(1 for h in hashes if h not in vectors)
    found = [vectors[h] for h in hashes if h in vectors]
    matrix = np.stack(found) if found else np.zeros((0, batch.dim), np.float32)
    wrong_dim = matrix.ndim != 2 or matrix.shape[1] != batch.dim
    finite = bool(np.isfinite(matrix).all())
    norms = np.linalg.norm(matrix, axis=1) if not wrong_dim else np.zeros(1)
    worst = float(np.abs(norms - 1.0).max()) if finite and len(norms) else (0.0 if finite else float("inf"))
    limit = batch.encoder_max_tokens
    truncated = sum(1 for d in batch.documents for c in d.chunks if limit and c.token_count > limit)
    truncation_ok = truncated == 0 or batch.truncation_expected
    passed = not wrong_dim and finite and worst <= NORM_TOLERANCE and not missing and truncation_ok
    if not truncated:
        advice = ""
    elif batch.truncation_expected:
        advice = ' (expected: [chunking] strategy = "document" embeds each document\'s first window)'
    else:
        advice = " (lower [chunking] max_tokens to the model's limit)"
    return RuleOutcome(
        passed=passed,
        summary=f"{matrix.shape[0]} vectors of dim {matrix.shape[-1]} (expected {batch.dim}); "
        f"{missing} chunks without a vector; finite={finite}; max |norm-1|={worst:.2e}; {truncated} "
        f"chunks longer than the encoder's {limit} tokens{advice}",
        metadata={
            "vectors": int(matrix.shape[0]),
            "dim": int(matrix.shape[-1]),
            "missing_vectors": missing,
            "max_norm_error": worst,
            "chunks_over_encoder_limit": truncated,
        },
    )


def index_matches_manifest(store: VectorStore, source: str) -> RuleOutcome:
    """The index holds exactly the chunks the source's manifest says, each id once (counted in Arrow)."""
    manifest = store.manifest_table(source, ["status", "n_chunks"])
    expected = 0
    if manifest.num_rows:
        chunked = pc.equal(manifest["status"], "chunked")
        expected = int(pc.sum(pc.if_else(chunked, manifest["n_chunks"], 0)).as_py() or 0)
    ids = store.chunks_arrow(columns=["id", "source"])
    ids = ids.filter(pc.equal(ids["source"], source))["id"] if ids.num_rows else pa.array([], pa.string())
    duplicate_ids = len(ids) - len(pc.unique(ids)) if len(ids) else 0
    passed = len(ids) == expected and duplicate_ids == 0
    return RuleOutcome(
        passed=passed,
        summary=f"index has {len(ids)} rows for source {source!r}; manifest expects {expected}; "
        f"{duplicate_ids} duplicate ids",
        metadata={"index_rows": len(ids), "manifest_chunks": expected, "duplicate_ids": duplicate_ids},
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
    manifest = store.manifest_table(source, ["status", "reason"])
    total = manifest.num_rows
    quarantined: list[str | None] = []
    if total:
        quarantined = manifest.filter(pc.equal(manifest["status"], "quarantined"))["reason"].to_pylist()
    rate = len(quarantined) / total if total else 0.0
    reasons = Counter(_reason_kind(reason or "") for reason in quarantined).most_common(3)
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
    for chunked in batch.documents:
        doc_bad = doc_len = 0
        for chunk in chunked.chunks:
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
            suspicious_docs.append(Path(chunked.document.path).name)
    total_chars = sum(len(c.text) for d in batch.documents for c in d.chunks)
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
    counts = np.array([c.token_count for d in batch.documents for c in d.chunks], dtype=np.int64)
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


def near_duplicate_documents(
    batch: ChunkedBatch, vectors: dict[str, np.ndarray], threshold: float
) -> RuleOutcome:
    """Pairs of documents in this run whose mean chunk vectors are nearly identical."""
    documents = [d for d in batch.documents if all(c.text_hash in vectors for c in d.chunks)]
    if len(documents) < 2:
        return RuleOutcome(True, "fewer than two documents in this run", {"pairs": 0})
    names = [d.document.external_id for d in documents]
    centroids = np.stack([np.mean([vectors[c.text_hash] for c in d.chunks], axis=0) for d in documents])
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
