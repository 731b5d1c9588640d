"""The outside world: the downstream API client, Redis, and the development stack's launchers."""
