"""Elements, one module per kind (see :data:`panoptes.core.registry.KINDS`)."""
