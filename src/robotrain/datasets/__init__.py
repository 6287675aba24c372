"""The dataset domain: datasets a user uploads and owns, named in specs as `dataset://<id>`."""
