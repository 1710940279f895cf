"""Model: metadata, tokenizer, forward pass (against llama.cpp's reference and a C program
calling the library directly), generation and classification."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import numpy
import pytest

import prge

PROMPT = "The capital of France is"
PARIS = 7042
TOLERANCE = 2e-3  # against llama.cpp on the dequantized-f32 weights (fp32 numerics)


def test_metadata(model: prge.Model) -> None:
    assert model.architecture == "llama"
    assert (model.n_vocab, model.n_layer, model.n_embd, model.n_ctx_train) == (49152, 30, 576, 8192)
    assert model.meta("general.architecture") == "llama"
    assert model.meta("llama.block_count") == "30"
    assert "n_vocab=49152" in repr(model)


def test_tokenize_matches_llama_cpp(model: prge.Model, reference: Dict[str, Any]) -> None:
    assert model.tokenize(PROMPT) == [504, 3575, 282, 4649, 314]
    for text, ids in reference["tokenization"].items():
        assert model.tokenize(text) == ids, text
        assert model.detokenize(ids) == text


def test_tokenize_special_and_unicode(model: prge.Model) -> None:
    assert len(model.tokenize("<|im_start|>", parse_special=True)) == 1
    assert len(model.tokenize("<|im_start|>")) > 1
    text = "héllo wörld 🙂 日本語\n\ttabs"
    assert model.detokenize(model.tokenize(text)) == text
    assert model.tokenize("") == []
    assert model.detokenize(numpy.array(model.tokenize(PROMPT))) == PROMPT


def test_forward_last_position_top1(model: prge.Model) -> None:
    logits = model.forward(model.tokenize(PROMPT))
    assert logits.shape == (1, model.n_vocab) and logits.dtype == numpy.float32
    assert int(logits[-1].argmax()) == PARIS


def test_forward_matches_llama_cpp_reference(model: prge.Model, reference: Dict[str, Any]) -> None:
    for prompt, ref in reference["logits"].items():
        logits = model.forward(ref["tokens"], outputs="all").astype(numpy.float64)
        assert logits.shape == (len(ref["tokens"]), model.n_vocab)
        for position, top5 in enumerate(ref["per_position_top5"]):
            for token, value in top5:
                assert abs(logits[position, token] - value) < TOLERANCE, (prompt, position, token)
        last = logits[-1]
        assert [t for t, _ in ref["top10"]] == list(numpy.argsort(-last)[:10])
        log_softmax = last - (last.max() + math.log(numpy.exp(last - last.max()).sum()))
        for token, value in ref["logsoftmax"].items():
            assert abs(log_softmax[int(token)] - value) < TOLERANCE, (prompt, token)


# Runs prge_forward on argv's token ids (last position) and writes the logits as raw floats.
FORWARD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "prge.h"

int main(int argc, char **argv) {
    prge_model *model;
    prge_model_params params;
    if (prge_model_default_params(&params) != PRGE_OK) return 1;
    if (prge_model_load(argv[1], &params, &model) != PRGE_OK) return 2;
    size_t n_vocab, n = (size_t)argc - 2;
    if (prge_model_n_vocab(model, &n_vocab) != PRGE_OK) return 3;
    int32_t *tokens = malloc(n * sizeof *tokens);
    float *logits = malloc(n_vocab * sizeof *logits);
    for (size_t i = 0; i < n; i++) tokens[i] = atoi(argv[i + 2]);
    prge_seq seq = {tokens, n};
    prge_seq_pos out = {0, n - 1};
    prge_batch batch = {&seq, 1, &out, 1};
    if (prge_forward(model, NULL, &batch, logits, n_vocab) != PRGE_OK) {
        fprintf(stderr, "%s\n", prge_last_error());
        return 4;
    }
    fwrite(logits, sizeof *logits, n_vocab, stdout);
    prge_model_free(model);
    free(tokens);
    free(logits);
    return 0;
}
"""


def test_forward_equals_the_c_call(
    model: prge.Model, model_path: Path, compile_c: Callable[[str, str], Path]
) -> None:
    exe = compile_c("forward", FORWARD_C)
    for text in (PROMPT, "Once upon a time, there was a"):
        ids = model.tokenize(text)
        raw = subprocess.run(
            [str(exe), str(model_path), *map(str, ids)], check=True, capture_output=True
        ).stdout
        from_c = numpy.frombuffer(raw, dtype=numpy.float32)
        from_python = model.forward(ids)[0]
        assert numpy.abs(from_c - from_python).max() <= 1e-5, text


def test_ragged_batch_equals_separate_runs(model: prge.Model) -> None:
    a, b = model.tokenize(PROMPT), model.tokenize("Once upon a time, there was a")
    together = model.forward([a, b])
    assert together.shape == (2, model.n_vocab)
    assert numpy.abs(together[0] - model.forward(a)[0]).max() < 1e-3
    assert numpy.abs(together[1] - model.forward(b)[0]).max() < 1e-3
    chosen = model.forward([a, b], outputs=[(1, 0), (0, 4)])
    assert numpy.abs(chosen[1] - together[0]).max() < 1e-3
    assert numpy.abs(chosen[0] - model.forward(b, outputs="all")[0]).max() < 1e-3


def test_forward_without_numpy_gives_lists(model: prge.Model, model_path: Path) -> None:
    script = (
        "import json, sys; sys.modules['numpy'] = None\n"
        "import prge\n"
        f"m = prge.Model({str(model_path)!r})\n"
        f"rows = m.forward(m.tokenize({PROMPT!r}))\n"
        "assert type(rows) is list and type(rows[0]) is list and type(rows[0][0]) is float\n"
        "print(json.dumps(rows[0][:1000]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env
    ).stdout
    assert (
        numpy.abs(
            numpy.array(json.loads(out)) - model.forward(model.tokenize(PROMPT))[0][:1000]
        ).max()
        < 1e-5
    )


def test_generate_continues_the_prompt(model: prge.Model) -> None:
    text = model.generate(PROMPT, n_predict=4)
    assert text.startswith(" Paris")
    assert model.generate(PROMPT, n_predict=0) == ""


def test_classify_scores_are_log_probabilities(
    model: prge.Model, reference: Dict[str, Any]
) -> None:
    result = model.classify(PROMPT, [" the", " Paris"])
    assert result.best == 1 and result.label == " Paris"
    log_softmax = reference["logits"][PROMPT]["logsoftmax"]
    assert abs(result.scores[1] - log_softmax[str(PARIS)]) < TOLERANCE
    assert abs(result.scores[0] - log_softmax["260"]) < TOLERANCE


def test_classify_rejects_multi_token_labels(model: prge.Model) -> None:
    with pytest.raises(prge.InvalidArgumentError) as error:
        model.classify(PROMPT, [" Paris", " the capital"])
    assert error.value.message
    with pytest.raises(TypeError):
        model.classify(PROMPT, " Paris")


def test_numeric_mode_bf16_stays_close(model_path: Path, model: prge.Model) -> None:
    ids = model.tokenize(PROMPT)
    with prge.Model(model_path, numeric_mode="bf16", n_threads=1) as bf16:
        logits = bf16.forward(ids)[0]
    assert int(logits.argmax()) == PARIS
    assert numpy.abs(logits - model.forward(ids)[0]).max() < 1.0


def test_numeric_mode_int8_stays_close(model_path: Path, model: prge.Model) -> None:
    # More than 24 tokens: shorter calls take the bf16 dot path, longer ones the int8 kernel.
    ids = model.tokenize("Paris is a large city in the north of France, known for its museums, "
                         "its cafes and the river Seine. " + PROMPT)
    assert len(ids) > 24
    with prge.Model(model_path, numeric_mode="int8", n_threads=1) as int8:
        logits = int8.forward(ids)[0]
    reference = model.forward(ids)[0]
    assert int(logits.argmax()) == int(reference.argmax())
    assert numpy.abs(logits - reference).max() < 1.0
