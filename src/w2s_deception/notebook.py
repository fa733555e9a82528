"""Chapter set-up: executed notebooks carry results only, so re-runs compare equal under nbval."""

from __future__ import annotations

import warnings


def quiet_chapter() -> None:
    """Silence library warnings and progress bars in a chapter; numbers shown to 3 decimals.

    Call it before importing the rest of the package: importing tqdm in a kernel without widgets
    warns (with a machine-specific path). Progress bars belong to the terminal that runs the book
    (the book command trains first, with bars); inside notebooks they would make cold and warm
    runs differ.
    """
    warnings.filterwarnings("ignore")
    import datasets
    import pandas as pd
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    pd.set_option("display.precision", 3)
