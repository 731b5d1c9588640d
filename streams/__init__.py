"""The data: settings, the Faust app factory, the topic catalog, event, job and schedule schemas,
record keys and headers, metrics. Imports nothing of `cronbus.agents` or `cronbus.clients`."""
