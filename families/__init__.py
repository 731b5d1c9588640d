"""cronbus's own job families, the default catalog (``CRONBUS_JOB_MODULES=cronbus.families``),
declared exactly as a user's module declares its job types: the world-time scheduler's family
(:mod:`.world`), billing and compliance (:mod:`.billing`), data exports and retention
(:mod:`.data`), notifications, email and push (:mod:`.notifications`) and the installation's
upkeep tasks (:mod:`.operations`)."""

from cronbus.families import billing, data, notifications, operations, world

JOB_TYPES = [*world.JOB_TYPES, *billing.JOB_TYPES, *data.JOB_TYPES, *notifications.JOB_TYPES,
             *operations.JOB_TYPES]
EVENT_TYPES = [*world.EVENT_TYPES, *billing.EVENT_TYPES, *data.EVENT_TYPES]
