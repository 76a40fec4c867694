"""Run the serving app with uvicorn (``visrec serve``): ``serve(Settings(...), host, port)``."""
import logging
import os

from ..settings import Settings


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000,
          access_log: bool = False, log_level: str = "info") -> None:
    # One BLAS thread: a matrix-vector product gains little from a second one and suffers badly
    # under CPU contention (measured: BPR scoring 0.05 ms with one thread, 1-6 ms with two while
    # the other core is busy). The variable covers a BLAS not loaded yet, threadpoolctl one that is.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    import numpy  # noqa: F401  (loads the BLAS, so the limit below applies to it)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import uvicorn

    from .app import create_app

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # uvloop + httptools when installed (uvicorn[standard]): the cheapest request path uvicorn has
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level=log_level,
                loop="auto", http="auto", timeout_keep_alive=30)
