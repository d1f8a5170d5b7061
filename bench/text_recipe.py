"""How text training defaults are chosen (issue 17): each recipe runs the whole text training (the linear half's
fits and their choice by cross-validation, the network, the choice of what ships) once on Kiln's own split of
each text set's train file, the quality benchmark's train side, and is scored on Kiln's validation split (where
every choice was made) and its internal test split (which none saw). The benchmark's test files are never read.

Recipes (``RECIPES``): ``default`` is what the configuration says now; ``wide table fine-tuned`` lets the joint
model's training move the linear half's closed-form per-term weights (text_model.wide_trainable), the default
before this benchmark; ``no wide-table budget`` lets the hashed buckets grow with the data whatever the class count
(text_model.max_wide_weights None), the default before the budget; ``NBSVM linear half`` makes the linear half
NBSVM (text_model.linear_model nb_svm; two-class sets only).

    $ .venv/bin/python -m bench.text_recipe                                  # every text set and recipe
    $ .venv/bin/python -m bench.text_recipe --only cr sst2 --recipes default
"""

from __future__ import annotations

from typing import Any

from bench.recipes import RecipeBench, main

RECIPES: dict[str, dict[str, Any]] = {
    "wide table fine-tuned": {"text_model": {"wide_trainable": True}},
    "no wide-table budget": {"text_model": {"max_wide_weights": None}},
    "NBSVM linear half": {"text_model": {"linear_model": "nb_svm"}},
    "default": {},  # the wide table as the closed-form fit left it, within text_model.max_wide_weights
}


def _settings(cfg: Any) -> dict[str, Any]:
    t = cfg.text_model
    return {
        "architecture": t.architecture,
        "wide_mode": t.wide_mode,
        "wide_trainable": t.wide_trainable,
        "max_wide_weights": t.max_wide_weights,
        "linear_model": t.linear_model,
    }


BENCH = RecipeBench(
    result="text_recipe",
    task="text",
    sets=("sample_texts", "cr", "mr", "subj", "mpqa", "sst2", "ag_news", "ohsumed23", "snips", "clinc150"),
    recipes=RECIPES,
    base={"train": {"refit": False}, "data": {"label_issues": "off"}},  # fitted once on the training split
    settings=_settings,
)

if __name__ == "__main__":
    main(BENCH, __doc__)
