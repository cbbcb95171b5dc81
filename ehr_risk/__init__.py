"""ehr-risk: EHR records to validated cardiovascular and chronic-disease risk predictions."""

__version__ = "0.1.0"
