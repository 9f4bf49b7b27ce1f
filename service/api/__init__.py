"""The HTTP service: routes table in app.py, one module per resource."""
