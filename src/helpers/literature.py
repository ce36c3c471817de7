"""Published results on the PBC and BloodMNIST data (works the bibliography cites), for the chapters' comparisons."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from .transfer_run import TransferRun

# Reference points from the sources list ("Results to compare with"), with their bibliography keys.
LITERATURE = [
    {"work": "acevedo2019recognition", "data": "PBC", "model": "VGG-16 features + SVM", "px": None,
     "training": "frozen features", "test accuracy": 0.86},
    {"work": "acevedo2019recognition", "data": "PBC", "model": "VGG-16", "px": None,
     "training": "fine-tuned", "test accuracy": 0.962},
    *[{"work": "doerrich2024medmnistplus", "data": "BloodMNIST", "model": "VGG16", "px": px,
       "training": "linear probe (frozen)", "test accuracy": acc}
      for px, acc in ((64, 0.8453), (128, 0.8886), (224, 0.9377))],
    *[{"work": "doerrich2024medmnistplus", "data": "BloodMNIST", "model": "VGG16", "px": px,
       "training": "end-to-end, GPU", "test accuracy": acc}
      for px, acc in ((64, 0.9820), (128, 0.9852), (224, 0.9877))],
    *[{"work": "doerrich2024medmnistplus", "data": "BloodMNIST", "model": "ResNet-18", "px": px,
       "training": "end-to-end, GPU", "test accuracy": acc}
      for px, acc in ((64, 0.9706), (128, 0.9834), (224, 0.9894))],
]


def literature_table(run: TransferRun | None = None, test_accuracy: float | None = None,
                     label: str | None = None) -> pd.DataFrame:
    """The published reference points, with this chapter's run (``test_accuracy``) as the last row."""
    names = {"acevedo2019recognition": "Acevedo et al. 2019", "doerrich2024medmnistplus": "MedMNIST+ 2025"}
    table = pd.DataFrame([dict(r, work=names[r["work"]]) for r in LITERATURE])
    table["px"] = table["px"].astype("Int64")  # a whole number, or <NA> where the work does not say
    if run is not None and test_accuracy is not None:
        how = "phases 1-3" if run.end_to_end else "phases 1-2, cached activations"
        table.loc[len(table)] = {"work": label or "this chapter", "data": "PBC (the book's split)",
                                 "model": run.family, "px": run.image_size, "training": how,
                                 "test accuracy": round(float(test_accuracy), 4)}
    return table
