"""Leakage-safe features at prediction times, fitted on training prediction times only.

    TabularFeaturizer     counts per window, last values, demographics, clinical variables (float32)
    SequenceFeaturizer    the most recent events as token ids with time, age and value bins
    clinical_variables    the named inputs of the clinical risk equations

Every featurizer reads events only through ehr_risk.events (the visibility rule).
"""

from ehr_risk.features.clinical import clinical_variables, clinical_variables_with_quality
from ehr_risk.features.sequence import SequenceFeaturizer
from ehr_risk.features.tabular import TabularFeaturizer

__all__ = ["SequenceFeaturizer", "TabularFeaturizer", "clinical_variables", "clinical_variables_with_quality"]
