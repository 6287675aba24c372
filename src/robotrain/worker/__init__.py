"""The worker: trains one attempt of one job where the launcher put it (a local process, a thread, a Modal GPU
container) and reports through the store, fenced on its attempt. It shares no memory with the API or the control
plane."""
