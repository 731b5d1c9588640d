"""The `cronbus` command (`main`): worker, publish, jobs, schedules, dlq, demo. Its progress bar
(`progress`) and the demo (`demo`, the only production module that starts the development stack)."""
