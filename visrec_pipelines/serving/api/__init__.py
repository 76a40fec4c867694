"""The HTTP layer (FastAPI): routes per area in ``routes``, typed dependencies in ``deps``, the
parameter spec in ``params``, bodies in ``models``, error answers in ``errors``. ``serving.app``
assembles them; nothing here holds data, the state comes from ``serving.manager``."""
