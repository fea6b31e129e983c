"""Writes synthetic llama-architecture GGUF models with random weights, for uniskip's GPU check.

The tokenizer is a real model's: every `tokenizer.*` key (chat template included) is copied
from the GGUF given with --tok-from (the GPU check passes SmolLM2-135M), so prompts tokenize
as they would for that model. Without it, a tiny byte-level SentencePiece vocabulary (354
tokens) is built in. Everything else is random: 2-D weights from a fixed seed, norms 1.
Needs numpy; the `gguf` package (gguf-py) when present, else built-in reader and writer.

    python3 make_model.py --preset small --tok-from SmolLM2.gguf --out /tmp/small.gguf
    python3 make_model.py --preset big --tok-from SmolLM2.gguf --out /tmp/big.gguf   # ~4.2 GB
    python3 make_model.py --preset big --blocks 6 --out /tmp/big6.gguf   # same width, 6 blocks

Presets:
  small  8 blocks, n_embd 512, 8 heads (4 KV), ffn 1536, F16 weights: CPU-vs-GPU agreement.
  big    32 blocks, n_embd 4096, 32 heads (8 KV), ffn 14336, rope theta 500000, context 8192,
         Q4_0 weights (Llama-3-8B's shape; the vocabulary is the tokenizer's): speed.

Quantized weights are written fast: one pool of random blocks (the scale fixed per tensor
kind, the quants random) is gathered at a different offset for every tensor, so a 4 GB file
takes seconds, not minutes.
"""
import argparse
import struct
import os
import sys
import time

import numpy as np

PRESETS = {
    "small": dict(blocks=8, n_embd=512, n_head=8, n_head_kv=4, n_ff=1536, ctx=4096,
                  rope_theta=10000.0, dtype="f16"),
    "big": dict(blocks=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, ctx=8192,
                rope_theta=500000.0, dtype="q4_0"),
}

# Standard deviations of the random weights. Blocks: ~0.02, as asked; the embeddings and
# the output projection larger, so the hidden state depends on the token and the logits are
# peaked (greedy choices with clear margins, less sensitive to rounding).
STD_BLOCK = 0.02
STD_EMBD = 1.0
# Logit std ~ STD_OUT * sqrt(n_embd) (the final norm makes the hidden state unit-RMS).
LOGIT_STD = 6.0

QK = 32  # elements per block of Q4_0 and Q8_0


def load_gguf():
    """The gguf package, or None (then the built-in writer below is used)."""
    if os.environ.get("MAKE_MODEL_BUILTIN_WRITER") == "1":
        return None
    try:
        import gguf
        return gguf
    except Exception as e:  # missing, or broken under this numpy
        print(f"make_model: the gguf package cannot be imported ({e!r}); using the built-in writer",
              file=sys.stderr)
        return None


# GGUF value types and ggml tensor types (as in ggml's gguf.h / ggml.h).
VTYPES = {"UINT8": 0, "INT8": 1, "UINT16": 2, "INT16": 3, "UINT32": 4, "INT32": 5, "FLOAT32": 6,
          "BOOL": 7, "STRING": 8, "ARRAY": 9, "UINT64": 10, "INT64": 11, "FLOAT64": 12}
SCALAR_FMT = {"UINT8": "<B", "INT8": "<b", "UINT16": "<H", "INT16": "<h", "UINT32": "<I", "INT32": "<i",
              "FLOAT32": "<f", "BOOL": "<?", "UINT64": "<Q", "INT64": "<q", "FLOAT64": "<d"}
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}
ALIGN = 32


def write_builtin(path, kv, tensors, data_iter):
    """A minimal GGUF v3 writer: kv = [(key, type, value, sub_type)], tensors =
    [(name, numpy-order element shape, ggml type name, nbytes)], data_iter yields each tensor's
    bytes (numpy arrays) in order."""
    import struct

    def pstr(b):
        b = b.encode("utf-8") if isinstance(b, str) else b
        return struct.pack("<Q", len(b)) + b

    def pval(vtype, value, sub=None):
        if vtype == "STRING":
            return pstr(value)
        if vtype == "ARRAY":
            out = [struct.pack("<IQ", VTYPES[sub], len(value))]
            if sub == "STRING":
                out += [pstr(v) for v in value]
            else:
                out.append(np.asarray(value, dtype=np.dtype(SCALAR_FMT[sub])).tobytes())
            return b"".join(out)
        return struct.pack(SCALAR_FMT[vtype], value)

    with open(path, "wb") as f:
        f.write(struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kv)))
        for key, vtype, value, sub in kv:
            f.write(pstr(key) + struct.pack("<I", VTYPES[vtype]) + pval(vtype, value, sub))
        offset = 0
        for name, shape, ttype, nbytes in tensors:
            ne = list(reversed(shape))
            f.write(pstr(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                    + struct.pack("<IQ", GGML_TYPES[ttype], offset))
            offset += -(-nbytes // ALIGN) * ALIGN
        f.write(b"\0" * (-f.tell() % ALIGN))
        for (name, shape, ttype, nbytes), data in zip(tensors, data_iter):
            assert data.nbytes == nbytes, (name, data.nbytes, nbytes)
            data.tofile(f)
            f.write(b"\0" * (-nbytes % ALIGN))


def read_kv_builtin(path):
    """Every metadata entry of a GGUF file as {key: (type name, value, element type name)},
    read with the struct module (the header only; tensor data is never touched)."""
    names = {v: k for k, v in VTYPES.items()}

    with open(path, "rb") as f:
        def unpack(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def rstr():
            return f.read(unpack("<Q")).decode("utf-8", errors="replace")

        def rval(vt):
            if vt == "STRING":
                return rstr()
            return unpack(SCALAR_FMT[vt])

        magic, version = struct.unpack("<II", f.read(8))
        if magic != 0x46554747 or version < 2:
            raise ValueError(f"{path}: not a GGUF v2/v3 file")
        _n_tensors, n_kv = struct.unpack("<QQ", f.read(16))
        out = {}
        for _ in range(n_kv):
            key = rstr()
            vt = names[unpack("<I")]
            if vt == "ARRAY":
                sub = names[unpack("<I")]
                n = unpack("<Q")
                if sub == "STRING":
                    value = [rstr() for _ in range(n)]
                else:
                    dt = np.dtype(SCALAR_FMT[sub])
                    value = np.frombuffer(f.read(dt.itemsize * n), dtype=dt).tolist()
                out[key] = (vt, value, sub)
            else:
                out[key] = (vt, rval(vt), None)
        return out


def read_kv(path, gguf):
    """As read_kv_builtin, through the gguf package when it is there."""
    if gguf is None:
        return read_kv_builtin(path)
    reader = gguf.GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        vt = gguf.GGUFValueType(field.types[0])
        sub = gguf.GGUFValueType(field.types[1]).name if vt == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        out[key] = (vt.name, value, sub)
    return out


def tokenizer_from(path, gguf):
    """The `tokenizer.*` entries of a real GGUF: [(key, type, value, element type)]."""
    kv = read_kv(path, gguf)
    tok = [(k, *v) for k, v in kv.items() if k.startswith("tokenizer.")]
    if not any(k == "tokenizer.ggml.tokens" for k, *_ in tok):
        raise SystemExit(f"make_model: {path} has no tokenizer.ggml.tokens")
    return tok


def byte_tokenizer():
    """A tiny SentencePiece ("llama") vocabulary: <unk> <s> </s>, the 256 byte tokens, the
    word boundary and printable ASCII; anything else falls back to bytes."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += ["\u2581"] + [chr(c) for c in range(0x21, 0x7F)]
    types += [1] * (len(tokens) - len(types))
    return [
        ("tokenizer.ggml.model", "STRING", "llama", None),
        ("tokenizer.ggml.tokens", "ARRAY", tokens, "STRING"),
        ("tokenizer.ggml.scores", "ARRAY", [0.0] * len(tokens), "FLOAT32"),
        ("tokenizer.ggml.token_type", "ARRAY", types, "INT32"),
        ("tokenizer.ggml.bos_token_id", "UINT32", 1, None),
        ("tokenizer.ggml.eos_token_id", "UINT32", 2, None),
        ("tokenizer.ggml.unknown_token_id", "UINT32", 0, None),
        ("tokenizer.ggml.add_bos_token", "BOOL", True, None),
        ("tokenizer.ggml.add_eos_token", "BOOL", False, None),
    ]


class BlockPool:
    """Random quantized blocks (bytes) with a fixed fp16 scale, gathered at rolling offsets."""

    def __init__(self, rng, block_bytes, n_blocks, scale, quant_bytes):
        self.block_bytes = block_bytes
        pool = np.empty((n_blocks, block_bytes), dtype=np.uint8)
        pool[:, 2:] = quant_bytes(rng, (n_blocks, block_bytes - 2))
        pool[:, 0:2] = np.frombuffer(np.float16(scale).tobytes(), dtype=np.uint8)
        self.pool = pool
        self.offset = 0

    def take(self, n_blocks):
        n = self.pool.shape[0]
        idx = (np.arange(n_blocks, dtype=np.int64) + self.offset) % n
        self.offset = (self.offset + 7919 * 64 + n_blocks) % n
        return self.pool[idx]


def q4_0_bytes(rng, shape):
    # Two nibbles per byte, each q in 1..15 (never 0), so the weight d * (q - 8) is in
    # -7d..7d with mean 0 and std ~4.32 d. (Uniform 0..15 would give every weight a mean of
    # -0.5 d: a common bias that makes one token win everywhere.)
    lo = rng.integers(1, 16, size=shape, dtype=np.uint8)
    hi = rng.integers(1, 16, size=shape, dtype=np.uint8)
    return lo | (hi << 4)


def q8_0_bytes(rng, shape):
    # int8 in -127..127, std ~73 d.
    return rng.integers(-127, 128, size=shape, dtype=np.int8).view(np.uint8)


QUANTS = {
    # name: (bytes per block, quant byte maker, std of (q) in units of d)
    "q4_0": (2 + QK // 2, q4_0_bytes, 4.32),
    "q8_0": (2 + QK, q8_0_bytes, 73.6),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--blocks", type=int, help="override the preset's block count")
    ap.add_argument("--dtype", choices=["f32", "f16", "q8_0", "q4_0"], help="override the preset's weight type")
    ap.add_argument("--tok-from", metavar="GGUF",
                    help="copy the tokenizer (every tokenizer.* key) from this GGUF; "
                         "default: a built-in byte-level vocabulary")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--name", help="general.name (default: synthetic-<preset>-<blocks>L-<dtype>)")
    ap.add_argument("--embd-std", type=float, default=STD_EMBD, help="std of token_embd (default %(default)s)")
    ap.add_argument("--block-std", type=float, default=STD_BLOCK, help="std of the block weights (default %(default)s)")
    ap.add_argument("--logit-std", type=float, default=LOGIT_STD,
                    help="std of the logits for a unit-RMS hidden state; sets output.weight's std (default %(default)s)")
    args = ap.parse_args()

    gguf = load_gguf()
    p = dict(PRESETS[args.preset])
    if args.blocks:
        p["blocks"] = args.blocks
    if args.dtype:
        p["dtype"] = args.dtype
    L, E, H, HKV, F = p["blocks"], p["n_embd"], p["n_head"], p["n_head_kv"], p["n_ff"]
    hd = E // H
    dtype = p["dtype"]
    if args.tok_from:
        tok, tok_source = tokenizer_from(args.tok_from, gguf), os.path.basename(args.tok_from)
    else:
        tok, tok_source = byte_tokenizer(), "built-in byte-level"
    n_vocab = len(next(v for k, _, v, _ in tok if k == "tokenizer.ggml.tokens"))
    name = args.name or f"synthetic-{args.preset}-{L}L-{dtype}"
    std_out = args.logit_std / np.sqrt(E)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)

    # Metadata: (key, GGUF type, value, array element type).
    kv = [
        ("general.architecture", "STRING", "llama", None),
        ("general.name", "STRING", name, None),
        ("llama.block_count", "UINT32", L, None),
        ("llama.context_length", "UINT32", p["ctx"], None),
        ("llama.embedding_length", "UINT32", E, None),
        ("llama.feed_forward_length", "UINT32", F, None),
        ("llama.attention.head_count", "UINT32", H, None),
        ("llama.attention.head_count_kv", "UINT32", HKV, None),
        ("llama.rope.freq_base", "FLOAT32", p["rope_theta"], None),
        ("llama.attention.layer_norm_rms_epsilon", "FLOAT32", 1e-5, None),
        ("llama.rope.dimension_count", "UINT32", hd, None),
        ("llama.vocab_size", "UINT32", n_vocab, None),
        ("general.file_type", "UINT32", {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}[dtype], None),
        ("general.quantization_version", "UINT32", 2, None),
    ]
    kv += tok

    # (name, rows, cols, std) of every 2-D weight and the 1-D norms (F32 ones), in file order.
    layout = [("m", ("token_embd.weight", n_vocab, E, args.embd_std)),
              ("n", "output_norm.weight"),
              ("m", ("output.weight", n_vocab, E, std_out))]
    for i in range(L):
        b = f"blk.{i}."
        layout += [
            ("n", b + "attn_norm.weight"),
            ("m", (b + "attn_q.weight", H * hd, E, args.block_std)),
            ("m", (b + "attn_k.weight", HKV * hd, E, args.block_std)),
            ("m", (b + "attn_v.weight", HKV * hd, E, args.block_std)),
            ("m", (b + "attn_output.weight", E, H * hd, args.block_std)),
            ("n", b + "ffn_norm.weight"),
            ("m", (b + "ffn_gate.weight", F, E, args.block_std)),
            ("m", (b + "ffn_up.weight", F, E, args.block_std)),
            ("m", (b + "ffn_down.weight", E, F, args.block_std)),
        ]

    pools = {}
    if dtype in QUANTS:
        block_bytes, maker, q_std = QUANTS[dtype]
        for std in sorted({m[3] for kind, m in layout if kind == "m"}):
            # 2^21 blocks (~38 MB for Q4_0): larger than any block tensor of the big preset.
            pools[std] = BlockPool(rng, block_bytes, 1 << 21, std / q_std, maker)

    def mat_data(rows, cols, std):
        if dtype in QUANTS:
            assert cols % QK == 0, (rows, cols)
            bb = QUANTS[dtype][0]
            return pools[std].take(rows * cols // QK).reshape(rows, cols // QK * bb)
        x = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(std)
        return x.astype(np.float16 if dtype == "f16" else np.float32)

    norm_ones = np.ones(E, dtype=np.float32)
    itemsize = {"f32": 4, "f16": 2}
    # (name, element shape in numpy order, ggml type, nbytes)
    tensors = []
    for kind, item in layout:
        if kind == "n":
            tensors.append((item, (E,), "f32", norm_ones.nbytes))
        else:
            nm, rows, cols, _ = item
            nbytes = rows * cols // QK * QUANTS[dtype][0] if dtype in QUANTS else rows * cols * itemsize[dtype]
            tensors.append((nm, (rows, cols), dtype, nbytes))

    def data_iter():
        for kind, item in layout:
            yield norm_ones if kind == "n" else mat_data(*item[1:])

    total = sum(t[3] for t in tensors)
    if gguf is None:
        write_builtin(args.out, kv, tensors, data_iter())
        writer = "built-in writer"
    else:
        w = gguf.GGUFWriter(args.out, "llama")  # adds general.architecture itself
        VT = gguf.GGUFValueType
        for key, vtype, value, sub in kv:
            if key != "general.architecture":
                w.add_key_value(key, value, VT[vtype], sub_type=VT[sub] if sub else None)
        raw = {"q4_0": gguf.GGMLQuantizationType.Q4_0, "q8_0": gguf.GGMLQuantizationType.Q8_0}
        for nm, shape, ttype, nbytes in tensors:
            if ttype in raw:
                byte_shape = (shape[0], nbytes // shape[0])
                w.add_tensor_info(nm, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=raw[ttype])
            else:
                w.add_tensor_info(nm, shape, np.dtype(np.float16 if ttype == "f16" else np.float32), nbytes)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for data in data_iter():
            w.write_tensor_data(data)
        w.close()
        writer = f"gguf {getattr(gguf, '__version__', '')}".strip()
    dt = time.time() - t0
    print(f"make_model: wrote {args.out}: {name}, {L} blocks, n_embd {E}, heads {H}/{HKV}, ffn {F}, "
          f"vocab {n_vocab} ({tok_source}), {dtype}, {total / 1e9:.2f} GB of tensors in {dt:.1f} s ({writer})")


if __name__ == "__main__":
    main()
