"""Reads what scripts/gpu-check/check.sh left in RUNS and writes OUT/summary.json and
OUT/summary.txt (Markdown tables, ready for the README).

    python3 scripts/gpu-check/summarize.py RUNS OUT DRY
"""
import glob
import json
import math
import os
import re
import statistics
import sys

# Stated tolerance of the CPU-vs-CUDA teacher-forced comparison, in nats per token.
NLL_TOLERANCE = 5e-3
TARGETS = ["1", "1.25", "1.5", "2", "3"]
AGREE_MODELS = [("small", "synthetic 8x512 F16"), ("smallq4", "synthetic 8x512 Q4_0"),
                ("smollm2", "SmolLM2-135M Q4_1")]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def load(path):
    """The last JSON line of a run's stdout, or None."""
    lines = read(path).strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec=".1f"):
    return "–" if x is None else format(x, spec)


def first_divergence(a, b):
    """Index of the first differing character, or None when equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def offloaded(runs, tag):
    """Where llama.cpp put a run's layers, from its log: `offloaded X/Y` (what it asked for;
    printed even when no GPU took them) and how many layers it assigned to a CUDA device
    (what happened), as "X/Y (K/Y on CUDA)"; None without a log line."""
    err = read(f"{runs}/{tag}.err")
    m = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", err)
    if not m:
        return None
    layers = dict(re.findall(r"layer +(\d+) assigned to device (\S+?),", err))
    on_cuda = sum(1 for dev in layers.values() if dev.startswith("CUDA"))
    return f"{m[-1][0]}/{m[-1][1]} ({on_cuda}/{len(layers)} on CUDA)"


def on_cuda(text):
    """Whether an `offloaded` description says that some layer ran on CUDA."""
    return bool(text) and " (0/" not in text


def placement(d):
    """A run's own account of where its blocks ran (`device` in its JSON), in words."""
    p = d.get("device") if isinstance(d, dict) else None
    if not isinstance(p, dict):
        return None
    return f"{p.get('device')}, {p.get('gpu_blocks')}/{p.get('n_layer')} blocks on the GPU"


def main():
    runs, out, dry = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    S = {"dry_run": dry, "nll_tolerance": NLL_TOLERANCE}
    L = []

    steps = []
    for line in read(f"{runs}/steps.tsv").splitlines():
        p = line.split("\t")
        if len(p) >= 3:
            steps.append({"step": p[0], "rc": p[1], "seconds": p[2], "extra": p[3] if len(p) > 3 else ""})
    S["steps"] = steps
    S["failed_steps"] = [s["step"] for s in steps if s["rc"] not in ("0", "skipped", "reused")]
    S["skipped_steps"] = [s["step"] for s in steps if s["rc"] == "skipped"]

    env = read(f"{runs}/env.txt")
    q = [l.strip() for l in env.splitlines() if re.match(r"^[^+#].*, [\d.]+, \d+ MiB, [\d.]+$", l.strip())]
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", env)
    nvcc = re.search(r"release ([\d.]+)", read(f"{runs}/build.log"))
    S["gpu"] = {"query": q[0] if q else None, "cuda": cuda.group(1) if cuda else None}
    build = next((s for s in steps if s["step"] == "cuda_build"), None)
    S["cuda_build"] = build
    L.append(f"# uniskip GPU check{' (DRY RUN: CPU only, no CUDA build)' if dry else ''}")
    L.append("")
    L.append(f"GPU: {S['gpu']['query'] or 'none'} (name, driver, memory, compute capability); "
             f"CUDA {S['gpu']['cuda'] or '–'}{f', nvcc {nvcc.group(1)}' if nvcc else ''}")
    if build:
        how = {"reused": "reused a carried module", "skipped": "skipped"}.get(build["rc"], f"rc {build['rc']}")
        L.append(f"libggml-cuda.so: {how} ({build['seconds']} s)")

    # Where the CUDA runs ran: llama.cpp's `offloaded` line of every run on the CUDA binary.
    cuda_tags = sorted(os.path.basename(p)[:-4] for p in glob.glob(f"{runs}/*.err")
                       if re.search(r"-cuda-|^speed-|^batch8-|^bench|^lossless|^check|^tune",
                                    os.path.basename(p)))
    S["offloaded"] = {t: offloaded(runs, t) for t in cuda_tags}
    n_gpu = sum(1 for v in S["offloaded"].values() if on_cuda(v))
    S["runs_on_cuda"] = n_gpu
    L.append(f"runs with layers on a CUDA device (llama.cpp's log: `offloaded X/Y`, then layers assigned to CUDA): "
             f"{n_gpu} of {len(S['offloaded'])}")

    # 1. Agreement: greedy text, CPU vs CUDA.
    L += ["", "## CPU vs CUDA agreement", "",
          "Greedy, 64 tokens (`--temp 0 --ignore-eos`): `--gpu-layers 0` without the CUDA module against the CUDA run "
          "(last rows: against the CPU's AVX2 code instead, for scale).", "",
          "| model | target | blocks | text vs CPU | offloaded (llama.cpp) | decode tok/s CPU / other |",
          "|---|---|---|---|---|---|"]
    agree = {}
    pairs = [(m, label, "cuda") for m, label in AGREE_MODELS] + [("small", "synthetic 8x512 F16, CPU (AVX2 code)", "cpuavx2")]
    for m, label, other in pairs:
        for s in ("1", "2"):
            a, b = load(f"{runs}/agree-{m}-cpu-s{s}.out"), load(f"{runs}/agree-{m}-{other}-s{s}.out")
            key = f"{m} cpu vs {other} {s}x"
            if not a or not b or "text" not in a or "text" not in b:
                if a or b:
                    agree[key] = {"available": False}
                continue
            fd = first_divergence(a["text"], b["text"])
            o = offloaded(runs, f"agree-{m}-{other}-s{s}")
            agree[key] = {"match": fd is None, "first_divergence_char": fd, "chars": len(a["text"]),
                          "offloaded": o,
                          "decode_tok_s": [a["decode_tokens_per_s"], b["decode_tokens_per_s"]]}
            verdict = "identical" if fd is None else f"differ from char {fd} of {len(a['text'])}"
            L.append(f"| {label} | {s}x | {len(a['active_layers'])}/{a['n_layer']} | {verdict} | "
                     f"{o or '–'} | {fmt(a['decode_tokens_per_s'])} / {fmt(b['decode_tokens_per_s'])} |")
    for m, _ in AGREE_MODELS:
        for dev in ("cpu", "cuda"):
            d1, d2 = load(f"{runs}/agree-{m}-{dev}-s1.out"), load(f"{runs}/agree-{m}-{dev}-s2.out")
            if d1 and d2 and "text" in d1 and "text" in d2:
                agree[f"{m} {dev} 1x vs 2x"] = {"skip_changes_text": d1["text"] != d2["text"]}
    S["agreement"] = agree

    ppl = {}
    for m, label in AGREE_MODELS:
        c, g = load(f"{runs}/ppl-{m}-cpu.out"), load(f"{runs}/ppl-{m}-cuda.out")
        if not c or not g or "full" not in c or "full" not in g:
            continue
        row = {"label": label, "windows": c.get("windows"), "tokens": c["full"]["tokens"],
               "kept_blocks": c.get("kept_blocks"), "n_layer": c.get("n_layer")}
        for part in ("full", "skipped"):
            nc, ng = math.log(c[part]["perplexity"]), math.log(g[part]["perplexity"])
            row[part] = {"nll_cpu": nc, "nll_cuda": ng, "delta": ng - nc,
                         "kl_cpu": c[part]["kl_mean"], "kl_cuda": g[part]["kl_mean"],
                         "top1_cpu": c[part]["top1_agreement"], "top1_cuda": g[part]["top1_agreement"]}
        row["within_tolerance"] = all(abs(row[p]["delta"]) <= NLL_TOLERANCE for p in ("full", "skipped"))
        ppl[m] = row
    S["ppl"] = ppl
    if ppl:
        L += ["", f"Teacher-forced (`uniskip ppl`, 8 windows x 64 scored tokens, Alice text): mean NLL per token, "
                  f"tolerance |ΔNLL| <= {NLL_TOLERANCE:g} nats/token.", "",
              "| model | depth | NLL CPU | NLL CUDA | ΔNLL | KL from full CPU / CUDA | within |",
              "|---|---|---|---|---|---|---|"]
        for m, row in ppl.items():
            for part, depth in (("full", "full"), ("skipped", f"2x ({len(row['kept_blocks'] or [])}/{row['n_layer']})")):
                r = row[part]
                ok = "yes" if abs(r["delta"]) <= NLL_TOLERANCE else "NO"
                L.append(f"| {row['label']} | {depth} | {r['nll_cpu']:.5f} | {r['nll_cuda']:.5f} | {r['delta']:+.1e} | "
                         f"{r['kl_cpu']:.4f} / {r['kl_cuda']:.4f} | {ok} |")

    # 2. Speed.
    rows = {}
    for path in glob.glob(f"{runs}/speed-s*-r*.out"):
        m = re.search(r"speed-s([\d.]+)-r(\d+)\.out$", path)
        d = load(path)
        if m and d and "decode_tokens_per_s" in d:
            rows.setdefault(m.group(1), {})[int(m.group(2))] = d
    base = rows.get("1", {})
    speed, meta = {}, None
    for s in sorted(rows, key=float):
        rr = rows[s]
        dec = [rr[r]["decode_tokens_per_s"] for r in sorted(rr)]
        paired = [rr[r]["decode_tokens_per_s"] / base[r]["decode_tokens_per_s"]
                  for r in sorted(rr) if r in base and base[r]["decode_tokens_per_s"]]
        d0 = next(iter(rr.values()))
        meta = meta or d0
        speed[s] = {"decode_tok_s": dec, "decode_median": med(dec),
                    "prefill_median": med([rr[r]["prefill_tokens_per_s"] for r in sorted(rr)]),
                    "vs_full_paired_median": med(paired), "active_blocks": len(d0["active_layers"]),
                    "n_layer": d0["n_layer"], "speedup_by_layers": d0["speedup_by_layers"],
                    "offloaded": S["offloaded"].get(f"speed-s{s}-r1"), "placement": placement(d0)}
    S["speed"] = speed
    L += ["", "## Decode speed under skipping"]
    if meta:
        L += ["", f"{meta['model']} (Llama-3-8B shape, random Q4_0 weights, {meta['n_layer']} blocks), "
                  f"prompt {meta['prompt_tokens']} tokens, {meta['generated_tokens']} decoded, greedy; "
                  f"medians of {len(base) or 1} interleaved rounds, ratio paired per round; "
                  f"ran on {placement(meta) or '?'} (llama.cpp: offloaded {S['offloaded'].get('speed-s1-r1') or '–'}).", "",
              "| target | blocks | decode tok/s | vs full depth | prefill tok/s | rounds |",
              "|---|---|---|---|---|---|"]
        for s, v in speed.items():
            L.append(f"| {s}x | {v['active_blocks']}/{v['n_layer']} | {fmt(v['decode_median'])} | "
                     f"{fmt(v['vs_full_paired_median'], '.2f')}x | {fmt(v['prefill_median'])} | "
                     + ", ".join(fmt(x) for x in v["decode_tok_s"]) + " |")
    else:
        L.append("no results")

    batch = {}
    for s in ("1", "2"):
        d = load(f"{runs}/batch8-s{s}.out")
        if d and "decode_tokens_per_s" in d:
            batch[s] = {"decode_tok_s_all_sequences": d["decode_tokens_per_s"],
                        "prefill_tok_s": d["prefill_tokens_per_s"], "generated_tokens": d["generated_tokens"]}
    S["batch8"] = batch
    if batch:
        L += ["", "`--batch 8` (8 sequences, one mask):", "",
              "| target | decode tok/s, all sequences | vs full depth |", "|---|---|---|"]
        b1 = batch.get("1", {}).get("decode_tok_s_all_sequences")
        for s, v in batch.items():
            r = v["decode_tok_s_all_sequences"] / b1 if b1 else None
            L.append(f"| {s}x | {fmt(v['decode_tok_s_all_sequences'])} | {fmt(r, '.2f')}x |")

    # Full depth with the hook unset against full depth through the hook (bench's rows).
    bj = load(f"{runs}/bench.out")
    hook = {}
    if isinstance(bj, dict):
        for row in bj.get("rows", []):
            if not row.get("possible", True):
                continue
            name = row["strategy"] + ("" if row["strategy"].startswith("full") else f" {row.get('target'):g}x")
            for cell in row.get("speed", []):
                hook.setdefault(name, {})[cell["batch"]] = {
                    "decode_median": cell["decode_tokens_per_s"]["median"],
                    "decode_rounds": cell["decode_tokens_per_s"]["rounds"],
                    "speedup_median": cell.get("speedup", {}).get("median")}
    S["bench_hook"] = hook
    if hook:
        batches = sorted({b for v in hook.values() for b in v})
        ss = bj.get("speed_settings", {})
        L += ["", f"Hook cost (`uniskip bench`, {ss.get('decode_tokens')} tokens, {ss.get('rounds')} round(s) after a warm-up; "
                  "`full, hook unset` is llama.cpp's own path):", "",
              "| row | " + " | ".join(f"batch {b} decode tok/s (vs full)" for b in batches) + " |",
              "|---|" + "---|" * len(batches)]
        for name, cells in hook.items():
            L.append(f"| {name} | " + " | ".join(
                f"{fmt(cells[b]['decode_median'])} ({fmt(cells[b]['speedup_median'], '.3f')}x)" if b in cells else "–"
                for b in batches) + " |")

    cpu8b = {s: load(f"{runs}/cpu8b-s{s}.out") for s in ("1", "2")}
    cpu8b = {s: {"decode_tok_s": d["decode_tokens_per_s"], "cpu_variant": d.get("cpu_variant")}
             for s, d in cpu8b.items() if d and "decode_tokens_per_s" in d}
    S["cpu_8b"] = cpu8b
    for s, v in cpu8b.items():
        L.append(f"\nSame model on the CPU only ({v['cpu_variant']}) at {s}x: {fmt(v['decode_tok_s'])} tok/s decode.")

    # 3. Lossless, check, tune.
    L += ["", "## SmolLM2: lossless decoding, check, tune", ""]
    ll = load(f"{runs}/lossless.out")
    ref = load(f"{runs}/agree-smollm2-cuda-s1.out") or load(f"{runs}/agree-smollm2-cpu-s1.out")
    if ll and "text" in ll:
        same = ref is not None and ll["text"] == ref.get("text")
        S["lossless"] = {"equals_full_depth": same, "decode_tok_s": ll["decode_tokens_per_s"],
                         "drafter": ll.get("drafter"), "acceptance_rate": ll.get("acceptance_rate"),
                         "mean_draft_len": ll.get("mean_draft_len"), "offloaded": S["offloaded"].get("lossless")}
        L.append(f"- `run --lossless` ({ll.get('drafter')}): text {'equals' if same else 'DIFFERS from'} full depth's; "
                 f"decode {fmt(ll['decode_tokens_per_s'])} tok/s, acceptance {fmt(ll.get('acceptance_rate'), '.2f')}, "
                 f"{fmt(ll.get('mean_draft_len'), '.2f')} tokens per draft")
    else:
        L.append("- `run --lossless`: no result")
    bl = read(f"{runs}/bench-lossless.out").strip()
    S["bench_lossless"] = bl[:4000] or None
    if bl:
        L += ["", "`uniskip bench --lossless`:", ""] + bl.splitlines()[:30] + [""]
    chk = read(f"{runs}/check.out") + read(f"{runs}/check.err")
    dev_lines = [l.strip() for l in chk.splitlines() if l.startswith(("devices:", "blocks run on"))]
    S["check"] = dev_lines or [l for l in chk.strip().splitlines() if "error" in l.lower()][:3]
    chk_step = next((s for s in steps if s["step"] == "check"), None)
    if chk_step and chk_step["rc"] == "skipped":
        S["check"] = ["skipped: no tokenizer.json for the model was staged"]
    L.append("- `uniskip check`: " + ("; ".join(S["check"]) if S["check"] else "no output"))
    tune_step = next((s for s in steps if s["step"] == "tune"), None)
    tj = load(f"{runs}/tune.out")
    S["tune"] = {"rc": tune_step["rc"] if tune_step else None, "seconds": tune_step["seconds"] if tune_step else None,
                 "offloaded": S["offloaded"].get("tune"),
                 "report": {k: v for k, v in tj.items() if isinstance(v, (int, float, str))} if isinstance(tj, dict) else None}
    if tune_step and tune_step["rc"] == "skipped":
        L.append("- `uniskip tune`: skipped (no time left)")
    elif tune_step:
        L.append(f"- `uniskip tune` (256 tokens): rc {tune_step['rc']} in {tune_step['seconds']} s, "
                 f"offloaded {S['tune']['offloaded'] or '–'}")

    L += ["", f"failed steps: {', '.join(S['failed_steps']) or 'none'}; skipped: {', '.join(S['skipped_steps']) or 'none'}"]
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/summary.json", "w") as f:
        json.dump(S, f, indent=1, default=str)
    with open(f"{out}/summary.txt", "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
