"""The shipped model learns from training + validation after validation chose its recipe; the test split never."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.store import ModelStore
from tests.conftest import TINY_CONFIG, make_texts, write_csv
from training.data.dataset import DataReport, Dataset, joined
from training.data.features import to_inputs
from training.fit.refit import best_epochs, learning_rates
from training.models.text import TOKEN_TABLE


def _marked(rows: list[tuple[str, str]], part: str) -> Dataset:
    """Texts each carrying a word of their own ("<part>word<i>"), so the vocabulary shows which items a fit read."""
    texts = [f"{text} {part}word{i}" for i, (text, _) in enumerate(rows)]
    return Dataset("text", texts, [label for _, label in rows], texts, DataReport(source=part))


def test_the_best_epoch_and_its_learning_rates_come_from_the_selection_history() -> None:
    from training.config import TrainConfig

    history = {"val_loss": [0.9, 0.5, 0.4, 0.45, 0.6], "lr": [0.01, 0.01, 0.005, 0.005, 0.0025]}
    assert best_epochs(history, "val_loss", "auto") == 3
    assert best_epochs({"val_accuracy": [0.5, 0.9, 0.8]}, "val_accuracy", "auto") == 2
    # epoch k ran at the rate recorded at the end of epoch k-1
    assert learning_rates(history, 3, TrainConfig(learning_rate=0.01, lr_schedule="constant")) == [0.01, 0.01, 0.01]
    assert learning_rates(history, 4, TrainConfig(learning_rate=0.01, lr_schedule="constant")) == [
        0.01,
        0.01,
        0.01,
        0.005,
    ]
    assert learning_rates(history, 3, TrainConfig(learning_rate=0.01, lr_schedule="cosine")) is None


@pytest.mark.slow
@pytest.mark.parametrize("keep_network", [True, False])
def test_the_shipped_model_read_training_and_validation_and_never_test(keep_network: bool, tmp_path: Path) -> None:
    from training.config import load_config
    from training.fit.train import train_model

    rows = make_texts(30)
    train, val, test = _marked(rows[:60], "train"), _marked(rows[60:78], "val"), _marked(rows[78:], "test")
    gain = "false" if keep_network else "true"  # easy texts: the rule would always drop the network
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        TINY_CONFIG.replace("epochs: 12", "epochs: 3").replace(
            "dropout: 0.1}\ntrain", f"dropout: 0.1, require_network_gain: {gain}}}\ntrain"
        )
    )
    cfg = load_config(cfg_path)
    trained = train_model(train, val, cfg)
    vocabulary = set(trained.spec.vocabulary)
    assert {f"trainword{i}" for i in range(60)} <= vocabulary
    assert {f"valword{i}" for i in range(18)} <= vocabulary  # validation items taught the shipped model
    assert not {f"testword{i}" for i in range(len(test))} & vocabulary
    shipped = trained.summary()["shipped"]
    assert shipped["learnt_from"] == "training + validation" and shipped["items"] == 78
    assert shipped["selection_items"] == {"training": 60, "validation": 18}
    assert trained.model.name == ("text_hybrid" if keep_network else "text_linear")
    if keep_network:
        assert shipped["refit_epochs"] == trained.summary()["best_epoch"]
        # token-table rows no training or validation item looks up (hashed bigram buckets) ship as zeros
        reached = np.unique(to_inputs(joined(train, val), trained.spec)[:, : trained.spec.deep_length])
        table = trained.model.get_layer(TOKEN_TABLE).get_weights()[0]
        zero = np.flatnonzero(~table.any(axis=1))
        assert len(zero) and set(zero.tolist()) == set(range(len(table))) - set(reached.tolist())
    # the linear half was learnt again on all 78 items: a validation-only word carries weight
    word = trained.spec.vocabulary.index("valword0")
    assert np.abs(trained.model.get_layer("wide_weights").get_weights()[0][word]).sum() > 0

    without = load_config(cfg_path, {"train": {"refit": False}})
    alone = train_model(train, val, without)
    assert not {f"valword{i}" for i in range(18)} & set(alone.spec.vocabulary)
    assert alone.summary()["shipped"]["learnt_from"] == "training"


@pytest.mark.slow
def test_the_retrain_flow_ships_a_model_that_never_saw_its_test_split(tmp_path: Path, prefect_server: None) -> None:
    from flows.retrain import retrain
    from training.config import load_config
    from training.data.clean import load_dataset
    from training.data.split import split_dataset

    rows = [(f"{text} item{i}", label) for i, (text, label) in enumerate(make_texts(40))]
    data = write_csv(tmp_path / "t.csv", rows)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG.replace("epochs: 12", "epochs: 3"))
    store, out = str(tmp_path / "store"), str(tmp_path / "run")
    report = retrain(task="text", data=str(data), out=out, store=store, config=str(cfg))
    split = report["data"]["split"]
    assert report["training"]["shipped"]["items"] == split["train"] + split["validation"]
    # the same stable split, made again: validation items' own words are in the shipped vocabulary, test items' not
    _, val, test = split_dataset(load_dataset("text", data), load_config(cfg).data)
    vocabulary = set(ModelStore(tmp_path / "store").get("text", "v0001").manifest["spec"]["vocabulary"])
    own = [text.split()[-1] for text in val.inputs], [text.split()[-1] for text in test.inputs]
    assert own[0] and set(own[0]) <= vocabulary
    assert own[1] and not set(own[1]) & vocabulary
    assert report["metrics"]["split"] == "test" and report["metrics"]["examples"] == split["test"]


@pytest.mark.slow
def test_a_run_killed_during_the_refit_resumes_from_validations_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.fit.train as training_module
    from training.config import load_config
    from training.fit.callbacks import FINISHED, HISTORY, SELECTED
    from training.fit.train import train_model

    rows = make_texts(30)
    train, val = _marked(rows[:60], "train"), _marked(rows[60:78], "val")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(TINY_CONFIG.replace("epochs: 12", "epochs: 3"))  # the rule decides: network_kept recorded
    cfg, run = load_config(cfg_path), tmp_path / "run"
    first = train_model(train, val, cfg, run)
    assert (run / SELECTED).exists() and (run / FINISHED).exists()
    history = (run / HISTORY).read_text()

    # killed after training: the report still says what the refit and the wide half did, and the finished model
    # keeps the spec saved with it (not one made again, under rules a newer Kiln may have changed)
    with monkeypatch.context() as patched:
        patched.setattr(training_module, "shipped_spec", lambda *a: pytest.fail("the refit spec was made again"))
        again = train_model(train, val, cfg, run, resume=True)
    assert again.summary()["shipped"] == first.summary()["shipped"]
    assert again.wide is not None and again.wide == first.wide
    assert again.spec.to_dict() == first.spec.to_dict()

    # killed during the refit: the selection is not fitted again, the refit runs from validation's choice
    (run / FINISHED).unlink()
    resumed = train_model(train, val, cfg, run, resume=True)
    assert (run / HISTORY).read_text() == history
    assert resumed.summary()["shipped"]["refit_epochs"] == first.summary()["shipped"]["refit_epochs"]
    assert set(resumed.spec.vocabulary) == set(first.spec.vocabulary)


@pytest.mark.slow
def test_the_shipped_kernel_model_holds_training_and_validation_images_and_never_test(tmp_path: Path) -> None:
    from tests.conftest import make_image_folder
    from training.config import load_config
    from training.data.clean import load_dataset
    from training.data.features import to_inputs
    from training.data.split import split_dataset
    from training.fit.train import train_model

    cfg_path = tmp_path / "c.yaml"
    # A network that cannot learn in one epoch at this rate: validation ships the kernel model (alone or blended).
    slow = TINY_CONFIG.replace("epochs: 12, batch_size: 16, learning_rate: 0.01", "epochs: 1, learning_rate: 0.000001")
    cfg_path.write_text(slow.replace("kernel: false", "kernel: true"))
    cfg = load_config(cfg_path)
    train, val, test = split_dataset(load_dataset("image", make_image_folder(tmp_path / "images", 40)), cfg.data)
    trained = train_model(train, val, cfg)
    kernel = trained.summary()["kernel"]
    assert kernel["shipped"] in ("kernel", "blend") and kernel["kernel_val_accuracy"] > kernel["network_val_accuracy"]
    landmarks = trained.model.get_layer("kernel_rbf").get_weights()[0]
    parts = {"train": train, "val": val, "test": test}
    flat = {name: to_inputs(part, trained.spec).reshape(len(part), -1) for name, part in parts.items()}

    def held(images: np.ndarray) -> int:
        return sum(bool(np.isclose(landmarks, image, atol=1e-6).all(axis=1).any()) for image in images)

    assert held(flat["train"]) == len(train) and held(flat["val"]) == len(val)  # all of them: fewer than 1,000
    assert held(flat["test"]) == 0
    assert trained.summary()["shipped"]["learnt_from"] == "training + validation"
