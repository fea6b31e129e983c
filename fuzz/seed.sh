#!/usr/bin/env bash
# Writes the starting corpus of the `validate` fuzz target to corpus/validate/:
# three small valid GGUF files built here, plus the first 4 KiB of the cached catalog
# models when they are downloaded (real metadata to mutate).
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/validate
mkdir -p "$out"

python3 - "$out" <<'PY'
import struct, sys, os
out = sys.argv[1]

def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack('<Q', len(b)) + b

def kv(key, ty, value):
    return s(key) + struct.pack('<I', ty) + value

def gguf(kvs, tensors, version=3, align=32):
    # tensors: (name, dims, ggml type, bytes per element block (block, size))
    head = b'GGUF' + struct.pack('<IQQ', version, len(tensors), len(kvs)) + b''.join(kvs)
    infos, data_len = b'', 0
    for name, dims, ty, (block, size) in tensors:
        n = 1
        for d in dims:
            n *= d
        infos += s(name) + struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', d) for d in dims)
        infos += struct.pack('<IQ', ty, data_len)
        data_len = -(-(data_len + n // block * size) // align) * align
    body = head + infos
    body += b'\0' * (-len(body) % align)
    return body + b'\0' * data_len

F32 = (0, (1, 4))
def t(name, dims, ty=F32):
    return (name, dims, ty[0], ty[1])

LLAMA = ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_down', 'ffn_up']
GEMMA3 = LLAMA[:5] + ['attn_q_norm', 'attn_k_norm', 'post_attention_norm'] + LLAMA[5:] + ['post_ffw_norm']

def model(arch, parts, blocks, extra_kv=(), align=32, version=3):
    kvs = [kv('general.architecture', 8, s(arch)), kv('general.name', 8, s('seed')),
           kv(arch + '.block_count', 4, struct.pack('<I', blocks))] + list(extra_kv)
    ts = [t('token_embd.weight', [32, 4], (2, (32, 18))), t('output_norm.weight', [8])]
    ts += [t('blk.%d.%s.weight' % (i, p), [8]) for i in range(blocks) for p in parts]
    return gguf(kvs, ts, version=version, align=align)

def arr(ty, items):
    return struct.pack('<IQ', ty, len(items)) + b''.join(items)

scalars = [kv('test.u8', 0, b'\1'), kv('test.i8', 1, b'\xff'), kv('test.u16', 2, b'\1\0'),
           kv('test.i16', 3, b'\1\0'), kv('test.i32', 5, b'\1\0\0\0'), kv('test.f32', 6, b'\0\0\x80\x3f'),
           kv('test.bool', 7, b'\1'), kv('test.u64', 10, b'\1' + b'\0' * 7),
           kv('test.i64', 11, b'\1' + b'\0' * 7), kv('test.f64', 12, b'\0' * 8),
           kv('test.nested', 9, arr(9, [arr(8, [s('a'), s('bc')]), arr(7, [b'\0', b'\1'])]))]

seeds = {
    'llama-1-block': model('llama', LLAMA, 1),
    'gemma3-1-block-align64': model('gemma3', GEMMA3, 1,
                                    [kv('general.alignment', 4, struct.pack('<I', 64))], align=64),
    'gpt2-v2-all-types': model('gpt2', ['attn_norm'], 2, scalars, version=2),
}
for name, data in seeds.items():
    with open(os.path.join(out, name + '.gguf'), 'wb') as f:
        f.write(data)
PY

# The head of a real model is refused at once (its tensor infos are cut off); a second copy
# with the tensor count set to 0 lets the fuzzer reach the real metadata.
cache="${UNISKIP_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/uniskip/models}"
for model in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
    if [ -f "$cache/$model" ]; then
        head -c 4096 "$cache/$model" > "$out/head-$model"
        python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[8:16] = bytes(8); open(sys.argv[2], "wb").write(b)' \
            "$out/head-$model" "$out/head-no-tensors-$model"
    fi
done
ls -l "$out"
