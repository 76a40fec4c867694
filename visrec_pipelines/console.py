"""A quiet console for long runs: progress bars and the summary on screen, library chatter in a log.

MLflow announces every registration and warns about pickling and signatures, GX and Dagster warn
about previews and deprecations; useful in a log, noise between a run's own lines. While a run
lasts, those loggers, Python warnings and MLflow's own event stream write to ``log_file`` instead.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

LIBRARY_LOGGERS = ("mlflow", "great_expectations", "alembic", "py.warnings", "urllib3", "dvc", "git")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def library_output_to(log_file: Path):
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    saved = [(logger, logger.handlers[:], logger.propagate, logger.level)
             for logger in map(logging.getLogger, LIBRARY_LOGGERS)]
    for logger, _, _, _ in saved:
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
    stream = _mlflow_stream()
    progress_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"   # its download bars are not ours
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")       # each distinct warning once, into the log
            if stream is not None:
                stream.write = lambda text: handler.stream.write(text)   # eprint(): "Created version 3"
            yield log_file
    finally:
        if stream is not None:
            del stream.write                       # back to the class's write (sys.stderr)
        logging.captureWarnings(False)
        if progress_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = progress_bar
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        handler.close()


def _mlflow_stream():
    try:
        from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM
    except ImportError:
        return None
    return MLFLOW_LOGGING_STREAM
