"""The network under every client: whether the broker, Redis or a downstream service answers at
all (`reach`), asked once before a command or a worker starts, naming the setting when not."""
