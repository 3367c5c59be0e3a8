"""Render benchmarks/results.json into the generated part of benchmarks/RESULTS.md.

Prose (what helped, what did not) lives outside the markers and is kept as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mdp.bench import RESULTS_DIR, latest_results

START = "<!-- generated:start (mdp bench rewrites this part) -->"
END = "<!-- generated:end -->"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return "…"
    return str(value)


def render(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    lines = [
        START,
        "",
        f"Last run: {meta.get('started', '?')} on {meta.get('machine', '?')}, "
        f"Python {meta.get('python', '?')}"
        f"{' (quick)' if meta.get('quick') else ''}.",
    ]
    for name, section in results.items():
        if name == "meta" or not isinstance(section, dict):
            continue
        lines += ["", f"### {name}", "", "| key | value |", "|---|---|"]
        for key, value in section.items():
            if key == "trace":
                continue
            if isinstance(value, dict):  # e.g. ours_hybrid: {p50_ms, p95_ms}
                lines += [f"| {key}.{sub} | {_fmt(v)} |" for sub, v in value.items()]
            else:
                lines.append(f"| {key} | {_fmt(value)} |")
    lines += ["", END]
    return "\n".join(lines)


def write_results_md(path: Path | None = None) -> Path:
    target = path or RESULTS_DIR / "RESULTS.md"
    block = render(latest_results())
    text = target.read_text() if target.exists() else "# Benchmark results\n\n" + START + "\n" + END + "\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    target.write_text(text)
    return target
