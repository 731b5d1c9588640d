"""The fault suite (``make chaos``): scenarios R1..R7 on the real broker, Redis and development
API, each counting what reached the API. Not part of the installed cronbus package."""
