"""The bridge role: Redis pub/sub messages in (`cronbus.clients.redis.pubsub`), validated domain
events out (`rules` decides, `service` sends)."""
