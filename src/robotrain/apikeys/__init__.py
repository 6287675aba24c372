"""Personal API keys: long-lived bearer tokens (`rt_...`) a user creates while signed in, for the CLI and scripts."""
