"""Adapter: create with options, save/load round trip, the saved file's layout, errors."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest

import prge

PROMPT_IDS = [504, 3575, 282, 4649, 314]
# B is d_out x r for q, k, v, o, gate, up, down of SmolLM2-135M: 576+192+192+576+1536+1536+576.
B_ROWS_PER_LAYER = 5184


def test_n_params_follows_rank_targets_and_layers(model: prge.Model) -> None:
    with prge.Adapter.create(model) as default:
        assert default.n_params == 15 * B_ROWS_PER_LAYER * 2  # the recipe: top 15 layers, rank 2
    with prge.Adapter.create(
        model, rank=4, targets=["q", "v"], layers=[0, 29], alpha=8, seed=3
    ) as small:
        assert small.n_params == 2 * (576 + 192) * 4
        assert "n_params=6144" in repr(small)


def test_fresh_adapter_leaves_the_model_unchanged(model: prge.Model) -> None:
    with prge.Adapter.create(model, rank=4) as adapter:
        assert numpy.array_equal(
            model.forward(PROMPT_IDS, adapter=adapter), model.forward(PROMPT_IDS)
        )


def test_save_load_round_trip(model: prge.Model, tmp_path: Path) -> None:
    path = tmp_path / "adapter.gguf"
    with prge.Adapter.create(model, rank=4, seed=7) as adapter:
        adapter.save(path)
        with prge.Adapter.load(model, path) as loaded:
            assert loaded.n_params == adapter.n_params
            assert numpy.array_equal(
                model.forward(PROMPT_IDS, adapter=loaded),
                model.forward(PROMPT_IDS, adapter=adapter),
            )


def test_saved_file_is_a_llama_cpp_lora_adapter(model: prge.Model, tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "adapter.gguf"
    with prge.Adapter.create(model, rank=4, targets=["q"], layers=[0]) as adapter:
        adapter.save(path)
    reader = gguf.GGUFReader(str(path))

    def text(key: str) -> str:
        field = reader.fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    assert text("general.type") == "adapter" and text("adapter.type") == "lora"
    assert sorted(t.name for t in reader.tensors) == [
        "blk.0.attn_q.weight.lora_a",
        "blk.0.attn_q.weight.lora_b",
    ]


def test_a_scale_scales_the_saved_a(model: prge.Model, tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    lora_a = {}
    for name, a_scale in (("plain", None), ("half", {"q": 0.5})):
        path = tmp_path / f"{name}.gguf"
        with prge.Adapter.create(model, rank=4, targets=["q"], layers=[0], a_scale=a_scale) as adapter:
            adapter.save(path)
        reader = gguf.GGUFReader(str(path))
        lora_a[name] = numpy.array(next(t.data for t in reader.tensors if t.name.endswith(".lora_a")))
    assert numpy.array_equal(lora_a["half"], lora_a["plain"] * 0.5)  # same stream, scaled exactly


def test_adapter_errors_carry_the_library_message(
    model: prge.Model, tmp_path: Path, model_path: Path
) -> None:
    with pytest.raises(prge.IoError) as io_error:
        prge.Adapter.load(model, tmp_path / "missing.gguf")
    assert "missing.gguf" in io_error.value.message
    with pytest.raises(prge.PrgeError) as error:
        prge.Adapter.load(model, model_path)  # a model, not an adapter
    assert error.value.message
    # Bad options are invalid arguments or malformed JSON (both ValueErrors) naming the JSON path.
    for options, needle in (
        ({"rank": 0}, "rank"),
        ({"targets": ["q", "nope"]}, "nope"),
        ({"rank": "16"}, "rank"),
        ({"a_scale": {"v": 0}}, "a_scale"),
    ):
        with pytest.raises(ValueError) as value_error:
            prge.Adapter.create(model, **options)  # type: ignore[arg-type]
        assert isinstance(value_error.value, prge.PrgeError) and needle in value_error.value.message
    with pytest.raises(prge.IoError):
        with prge.Adapter.create(model, rank=2) as adapter:
            adapter.save(tmp_path / "no" / "such" / "dir" / "a.gguf")
