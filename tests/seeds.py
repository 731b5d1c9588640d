"""cronbus's own job families as a catalog, for tests of the parts that read one."""

from cronbus.streams.catalog import Catalog

SEEDS = Catalog.load(["cronbus.families"])
MODELS = SEEDS.models
