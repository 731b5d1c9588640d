"""The data: settings, the Faust app factory, the topic catalog, event and job schemas."""
