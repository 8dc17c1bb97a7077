"""``bgcut serve``: an HTTP API and a web page over one loaded model (``pip install 'bgcut[serve]'``).

``app.py`` holds the routes, limits and errors; ``batcher.py`` runs requests that arrive
together as one batch on the model.
"""
