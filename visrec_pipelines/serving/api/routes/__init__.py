"""The API's routes, one module per area; ``create_app`` includes ``ROUTERS`` in this order."""
from . import catalogue, feedback, gallery, probes, recommend, search

ROUTERS = [probes.router, recommend.router, catalogue.router, search.router, feedback.router, gallery.router]
