"""Entry points: where a process starts and composes its adapters (with `robotrain.wiring`), then hands them to the
API, the control plane or the worker. `modal_app.py` and the `robotrain` CLI call into these."""
