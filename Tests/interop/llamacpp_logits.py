#!/usr/bin/env python3
"""llama.cpp's logits for a model + LoRA adapters, for prge's adapter interoperability checks.

Needs llama-cpp-python (pip install llama-cpp-python; made with 0.3.36), the `gguf` package and
numpy. The default test suite does not: it compares against fixtures this made (see
scripts/fixtures/make_adapter_fixtures.py). AdapterInteropTests runs this live when PRGE_INTEROP=1.

    python3 Tests/interop/llamacpp_logits.py OUT.gguf --model MODEL.gguf \
        --tokens 1,504,3575 --tokens 1,4,5 --adapter NAME=PATH ... [--cache DIR]

For each path, adapter ("base" = no adapter) and prompt, OUT.gguf gets the F32 tensor
"<path>.<adapter>.<prompt index>" of ne [n_vocab, n_tokens]: llama.cpp's logits at every position.
The two paths:
  q4_1  MODEL as it is: llama.cpp's default CPU path, which quantizes activations to 8 bits
        (Q8_1) for every product with a Q4_1 / Q8_0 weight.
  f32   an F32 copy of MODEL (every tensor dequantized by gguf, cached in DIR): llama.cpp then
        multiplies in f32 throughout, the same arithmetic as prge's fp32 mode on MODEL.
The KV cache is F32 (llama.cpp's default is F16) and flash attention is off, so nothing but the
matrix products' activation quantization separates the paths. Adapters are applied with
llama-cpp-python's `Llama(lora_path=...)`, i.e. llama_adapter_lora_init + llama_set_adapters_lora
with scale 1, the way an end user loads them.
"""
import argparse
import os
import sys

import numpy as np
import gguf

GGML_TYPE_F32 = 0


def f32_copy(model, cache_dir):
    """An F32 copy of `model` (all tensors dequantized, metadata kept), made once and cached."""
    os.makedirs(cache_dir, exist_ok=True)
    st = os.stat(model)
    out = os.path.join(cache_dir, "%s.%d.F32.gguf" % (os.path.basename(model).rsplit(".gguf", 1)[0], st.st_size))
    if os.path.exists(out):
        return out
    r = gguf.GGUFReader(model)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(out + ".tmp", arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        if f.name == "general.file_type":
            w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        w.add_tensor(t.name, np.ascontiguousarray(data), raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(out + ".tmp", out)
    return out


def logits(model, tokens_list, adapter=None, threads=2):
    """[prompt] -> float32 [n_tokens, n_vocab]: llama.cpp's logits at every position."""
    from llama_cpp import Llama
    n_ctx = max(len(t) for t in tokens_list) + 8
    llm = Llama(model_path=model, lora_path=adapter, logits_all=True, n_ctx=n_ctx, n_batch=n_ctx,
                n_ubatch=n_ctx, n_threads=threads, n_threads_batch=threads, flash_attn=False,
                type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, n_gpu_layers=0, verbose=False)
    out = []
    for toks in tokens_list:
        llm.reset()
        llm.eval(toks)
        out.append(np.array(llm.scores[:len(toks)], dtype=np.float32))
    llm.close()
    return out


def paths(model, cache_dir):
    return [("q4_1", model), ("f32", f32_copy(model, cache_dir))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", action="append", required=True, help="comma-separated token ids of one prompt")
    ap.add_argument("--adapter", action="append", default=[], help="NAME=PATH")
    ap.add_argument("--cache", default=os.environ.get("PRGE_INTEROP_CACHE", "/tmp/prge-interop"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    prompts = [[int(x) for x in s.split(",")] for s in a.tokens]
    adapters = [("base", None)] + [tuple(s.split("=", 1)) for s in a.adapter]
    import llama_cpp
    w = gguf.GGUFWriter(a.out + ".tmp", "llama")
    w.add_string("interop.llama_cpp_python", llama_cpp.__version__)
    for pname, mpath in paths(a.model, a.cache):
        for aname, apath in adapters:
            for i, lg in enumerate(logits(mpath, prompts, apath, a.threads)):
                w.add_tensor("%s.%s.%d" % (pname, aname, i), lg)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
