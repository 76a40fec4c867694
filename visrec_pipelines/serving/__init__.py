"""Real-time serving: recommendations, similar items, search by image, feedback, and the gallery.

The hot path never queries Milvus: the champion and an exact in-memory copy of the index (with a
precomputed neighbour table) are loaded at start-up and swapped atomically when either changes.
Serving is configured by ``visrec_pipelines.settings.Settings`` (its serving fields).

Where things live:
  app.py          ``create_app(settings)``: routers, exception handlers, body limits, the gallery
  server.py       ``serve(settings, host, port)``: uvicorn with one BLAS thread (``visrec serve``)
  queries.py      ``ServingState``: the immutable served state and the queries it answers
  row_maps.py     catalogue / champion / index row translations of one state
  sources.py      where a state comes from: champion (registry, fallback chain, last_good.json),
                  index (snapshot or Milvus, signatures), catalogue and histories (``read_state``)
  manager.py      ``StateManager``: the watch thread, reload (forced: retry failures now), the swap,
                  ``/status``
  champion.py     the champion ranker, its fast scoring and its smoke test
  catalogue.py    titles, images and tags of the items; similar.py: the neighbour table
  reasons.py      why an item is shown, in words
  image_search.py picture -> query vector (the one path), the encoder loaded in the background
  thumbnails.py   /images thumbnails: size buckets, shrunk decoding, a byte-budget cache, few decodes
  inbox.py        where POST /events lands feedback (users table, ledger repairs: 503, never 500)
  problems.py     ``Unavailable`` (503) and ``public``: errors as /status may show them (no paths)
  limits.py       request-body limits (ASGI middleware)
  api/            the HTTP layer: params.py (the parameter spec: limits, defaults, descriptions,
                  the hot routes' parser), deps.py, models.py and status_models.py (documented
                  bodies), errors.py (handlers, documented error responses), responses.py, and
                  routes/{probes,recommend,catalogue,search,feedback,gallery}.py
FastAPI is imported only by ``app`` and ``api``.
"""
