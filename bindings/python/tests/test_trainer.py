"""Trainer: P-RGE steps and runs on a few SST-2 examples (q = 1, batch 2, rank 4), progress
callbacks, evaluation, adapters out of the trainer, checkpoints, and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy
import pytest
from conftest import SST2

import prge

CONFIG: Dict[str, Any] = {
    "task": "sst2",
    "q": 1,
    "batch": 2,
    "lr": 1e-3,
    "seed": 1,
    "adapter": {"rank": 4, "layers": [-2, -1]},
}
PROMPT_IDS = [504, 3575, 282, 4649, 314]


@pytest.fixture
def trainer(model: prge.Model) -> Iterator[prge.Trainer]:
    with prge.Trainer(model, CONFIG) as made:
        yield made


def logits_with(model: prge.Model, adapter: prge.Adapter) -> numpy.ndarray:
    return model.forward(PROMPT_IDS, adapter=adapter)


@pytest.mark.slow
def test_step_gives_finite_losses_and_changes_the_adapter(
    model: prge.Model, trainer: prge.Trainer
) -> None:
    losses = trainer.step(SST2[:2])
    assert len(losses) == 2 * CONFIG["q"] and all(math.isfinite(x) and x > 0 for x in losses)
    assert trainer.n_steps == 1
    with trainer.current_adapter() as adapter:
        assert numpy.abs(logits_with(model, adapter) - model.forward(PROMPT_IDS)).max() > 0


@pytest.mark.slow
def test_trained_adapter_save_load_round_trip(
    model: prge.Model, trainer: prge.Trainer, tmp_path: Path
) -> None:
    trainer.step(SST2[:2])
    path = tmp_path / "trained.gguf"
    with trainer.current_adapter() as adapter:
        adapter.save(path)
        trained = logits_with(model, adapter)
    with prge.Adapter.load(model, path) as loaded:
        assert numpy.array_equal(logits_with(model, loaded), trained)
    assert not numpy.array_equal(trained, model.forward(PROMPT_IDS))


@pytest.mark.slow
def test_train_reports_progress_and_stops_when_asked(trainer: prge.Trainer) -> None:
    assert trainer.add_examples(SST2) == len(SST2)
    seen: List[prge.Progress] = []
    result = trainer.train(steps=2, progress=seen.append)
    assert (result.steps, result.stopped) == (2, False) and result.last == seen[-1]
    assert [(p.step, p.total_steps) for p in seen] == [(1, 2), (2, 2)]
    assert all(math.isfinite(p.train_loss) and p.elapsed_s >= 0 for p in seen)
    result = trainer.train(steps=10, progress=lambda p: True)
    assert (result.steps, result.stopped) == (1, True)
    assert trainer.n_steps == 3


@pytest.mark.slow
def test_exception_in_progress_is_raised_after_the_run(trainer: prge.Trainer) -> None:
    trainer.add_examples(SST2)

    class Stop(Exception):
        pass

    def progress(p: prge.Progress) -> bool:
        raise Stop(p.step)

    with pytest.raises(Stop):
        trainer.train(steps=5, progress=progress)
    assert trainer.n_steps == 1  # the run stopped after the step whose callback raised
    assert trainer.train(steps=1, seconds=60).steps == 1  # and the trainer is still usable


@pytest.mark.slow
def test_evaluate_and_best_adapter(model: prge.Model, tmp_path: Path) -> None:
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(e) + "\n" for e in SST2[:6]))
    with prge.Trainer(model, dict(CONFIG, eval_every=1)) as trainer:
        assert trainer.add_examples(train_file) == 6
        assert trainer.add_examples(SST2[6:], split="dev") == 2
        before = trainer.evaluate()
        assert before.n == 2 and 0 <= before.accuracy <= 1 and math.isfinite(before.loss)
        assert trainer.evaluate("train").n == 6
        seen: List[prge.Progress] = []
        trainer.train(steps=1, progress=seen.append)
        assert all(p.evaluated and p.dev_accuracy is not None for p in seen)
        assert seen[-1].best_dev_accuracy is not None
        with trainer.best_adapter() as best:
            assert best.n_params == 2 * 5184 * 4


@pytest.mark.slow
def test_checkpoint_resume_continues_bit_for_bit(model: prge.Model, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.ckpt"
    with prge.Trainer(model, CONFIG) as first:
        first.add_examples(SST2)
        first.train(steps=1)
        first.save_checkpoint(checkpoint)
        first.train(steps=1)
        with first.current_adapter() as adapter:
            straight = logits_with(model, adapter)
    with prge.Trainer(model, CONFIG) as second:
        second.add_examples(SST2)
        second.load_checkpoint(checkpoint)
        assert second.n_steps == 1
        second.train(steps=1)
        with second.current_adapter() as adapter:
            assert numpy.array_equal(logits_with(model, adapter), straight)


def test_config_forms_and_errors(model: prge.Model, tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(CONFIG))
    for config in (CONFIG, json.dumps(CONFIG), config_file):
        with prge.Trainer(model, config) as trainer:
            assert trainer.n_steps == 0
    with pytest.raises(prge.PrgeError) as error:
        prge.Trainer(model, {"task": "sst2", "no_such_key": 1})
    assert "no_such_key" in error.value.message
    with pytest.raises(ValueError):
        prge.Trainer(model, "{not json")
    with pytest.raises(TypeError):
        prge.Trainer(model, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        prge.Trainer(model, CONFIG, adapter="adapter")  # type: ignore[arg-type]


def test_example_errors(trainer: prge.Trainer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SST2[0]) + "\n{not json\n")
    with pytest.raises(prge.PrgeError) as error:
        trainer.add_examples(bad)
    assert "2" in error.value.message  # names the line
    assert trainer.add_examples(SST2[:1]) == 1
    assert trainer.evaluate("train").n == 1  # all or nothing: the bad file added none
    with pytest.raises(TypeError):
        trainer.add_examples([SST2[0], "not a dict"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        trainer.step(SST2[0])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        trainer.add_examples(SST2, split="test")
    with pytest.raises(ValueError):
        trainer.train(steps=-1)
    with pytest.raises(prge.InvalidArgumentError):
        trainer.train()  # neither a step nor a time limit
