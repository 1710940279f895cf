#!/usr/bin/env python3
"""The reference model in another weight type, to measure prge on the formats users download.

    python3 benchmarks/requantize.py SRC.gguf DST.gguf TYPE

TYPE Q4_0, Q5_0, Q5_1 or Q8_0: every Q4_1 tensor of SRC (the linear layers; token_embd is
Q8_0, the norms F32, all kept) is dequantized and re-quantized by the `gguf` package's own
quantizers; metadata and every other tensor are copied. TYPE Q2_K, Q3_K_S/M/L, Q4_K_S/M,
Q5_K_S/M or Q6_K goes through llama.cpp's quantizer (`llama_model_quantize` of llama-cpp-python, which must be
importable): SRC is dequantized to F32 first (scripts/fixtures), then llama.cpp quantizes it with its own mixture (Q4_K_M
keeps some tensors in Q6_K). The values are SRC's Q4_1 weights re-rounded: the model still
works, but it is not a published checkpoint of that type: use it for speed and for agreement
between prge and llama.cpp on the same file, not for accuracy claims.

Needs numpy and gguf (and llama-cpp-python for the K types).
"""
import os, sys, tempfile
import gguf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "fixtures"))
from make_forward_fixtures import copy_metadata, dequantize_model, write_tensors  # noqa: E402

GGUF_TYPES = {"Q4_0", "Q5_0", "Q5_1", "Q8_0"}
LLAMA_FTYPES = {"Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
                "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}   # llama_ftype


def convert(src, dst, type_name):
    """gguf-py path: SRC's Q4_1 tensors -> type_name; everything else copied as is."""
    # general.file_type (llama.cpp's ftype) would no longer say what the file holds: left out.
    reader, writer = copy_metadata(src, dst, None)
    qtype = gguf.GGMLQuantizationType[type_name]
    out = []
    for t in reader.tensors:
        if t.tensor_type == gguf.GGMLQuantizationType.Q4_1:
            w = gguf.quants.dequantize(t.data, t.tensor_type)   # [rows, K] float32
            out.append((t.name, gguf.quants.quantize(w, qtype), qtype))
        else:
            out.append((t.name, t.data, t.tensor_type))
    write_tensors(writer, out)


def llama_quantize(src, dst, type_name):
    import llama_cpp
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "f32.gguf")
        dequantize_model(src, f32)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = LLAMA_FTYPES[type_name]
        params.nthread = os.cpu_count() or 1
        rc = llama_cpp.llama_model_quantize(f32.encode(), dst.encode(), params)
        if rc != 0:
            sys.exit(f"llama_model_quantize failed ({rc})")


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in GGUF_TYPES | set(LLAMA_FTYPES):
        sys.exit(__doc__)
    src, dst, type_name = sys.argv[1:]
    (convert if type_name in GGUF_TYPES else llama_quantize)(src, dst, type_name)
    counts = {}
    for t in gguf.GGUFReader(dst).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    print(f"{dst}: {os.path.getsize(dst) / 2**20:.1f} MiB, tensors {counts}")


if __name__ == "__main__":
    main()
