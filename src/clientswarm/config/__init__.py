"""The configuration file of a ClientCluster: pydantic models, loading, JSON Schema.

Load a file with :func:`load_config_file`; every problem with it (missing file, YAML syntax,
a typo three levels down) raises :class:`~clientswarm.errors.ConfigError` with one readable line
per problem.
"""

from clientswarm.config.errors import validation_problems
from clientswarm.config.loader import (
    config_json_schema,
    load_config_file,
    parse_config_text,
    validate_config_data,
)
from clientswarm.config.models import ClusterConfig, GroupConfig, TargetConfig

__all__ = [
    "ClusterConfig",
    "GroupConfig",
    "TargetConfig",
    "config_json_schema",
    "load_config_file",
    "parse_config_text",
    "validate_config_data",
    "validation_problems",
]
