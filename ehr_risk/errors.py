"""The one error hierarchy of ehr-risk.

    EhrRiskError                 anything the user can fix; the CLI prints one line and exits 2
    ├── ConfigError              a config / task / mapping file is invalid
    ├── InputDataError           an input file cannot be read or violates its contract
    │   └── RejectLimitError     --strict or --max-reject-fraction stopped the run
    ├── SchemaError              a table does not match its schema in data_schemas/
    └── ModelNotFoundError       a model URI, run id or alias does not resolve

Messages name files, positions, counts and reasons, never patient values or identifiers.
Any other exception escaping to the CLI is a bug and keeps its traceback.
"""


class EhrRiskError(Exception):
    """Base class: a user or data error with a one-line message."""


class ConfigError(EhrRiskError):
    pass


class InputDataError(EhrRiskError):
    pass


class RejectLimitError(InputDataError):
    pass


class SchemaError(EhrRiskError):
    pass


class ModelNotFoundError(EhrRiskError):
    pass
